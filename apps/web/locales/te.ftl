# Vaarta web app, Telugu. Keys as in en.ftl (a test checks it).
app-title = వార్త
nav-label = ప్రధాన
nav-conversations = చాట్‌లు
nav-mesh = మెష్
nav-settings = సెట్టింగ్‌లు
loading = లోడ్ అవుతోంది…
signin-title = సైన్ ఇన్
signin-help = ఈ పరికరంలో టెర్మినల్‌లో “vaarta open” నడిపి, అది చూపే లింక్‌ను తెరవండి.
signin-failed = ఈ సైన్-ఇన్ లింక్ ఇప్పటికే వాడబడింది లేదా గడువు ముగిసింది.
offline-title = నోడ్ నడవడం లేదు
offline-help = “vaarta up”తో ప్రారంభించి, ఈ పేజీని మళ్లీ లోడ్ చేయండి.
list-title = సంభాషణలు
list-empty = ఇంకా సంభాషణలు లేవు.
list-no-messages = ఇంకా సందేశాలు లేవు
list-unread =
    { $count ->
        [one] { $count } చదవనిది
       *[other] { $count } చదవనివి
    }
conv-back = చాట్‌లకు వెనక్కి
conv-members =
    { $count ->
        [one] { $count } సభ్యుడు
       *[other] { $count } సభ్యులు
    }
conv-empty = ఇంకా సందేశాలు లేవు.
conv-you = మీరు
conv-reply = జవాబు
conv-replying = { $name }కు జవాబు
conv-reply-cancel = జవాబు రద్దు
conv-in-reply = { $name }కు జవాబుగా
conv-deleted = సందేశం తొలగించబడింది
conv-edited = సవరించబడింది
conv-new-alert = { $name } నుండి కొత్త { $precedence } సందేశం
compose-label = సందేశం
compose-placeholder = సందేశం రాయండి
compose-precedence = ప్రాధాన్య స్థాయి
compose-send = పంపు
compose-failed = పంపలేదు: { $error }
prec-flash = ఫ్లాష్
prec-immediate = తక్షణం
prec-priority = ప్రాధాన్యం
prec-routine = సాధారణం
state-received = అందింది
state-sent = పంపబడింది
state-delivered = చేరింది
state-delivered-count = { $n } లో { $k } మందికి చేరింది
ack-button = అందినట్లు నిర్ధారించండి
ack-done = మీరు నిర్ధారించారు · { $time }
roll-title = హాజరు
roll-summary = { $ack } నిర్ధారించారు · { $read } చదివారు · { $delivered } మందికి చేరింది · { $missing } మందికి చేరలేదు
roll-acknowledged-at = నిర్ధారించారు · { $time }
roll-read = చదివారు
roll-delivered = చేరింది, చదవలేదు
roll-not-delivered = ఇంకా చేరలేదు
roll-realert = మళ్లీ హెచ్చరించండి
roll-realerted =
    { $count ->
        [one] { $count } సభ్యుడిని మళ్లీ హెచ్చరించాము
       *[other] { $count } మంది సభ్యులను మళ్లీ హెచ్చరించాము
    }
mesh-title = మెష్ ఆరోగ్యం
mesh-state = నోడ్
mesh-online = ఆన్‌లైన్
mesh-offline = ఆఫ్‌లైన్
mesh-links = కనెక్షన్లు
mesh-conversations = సంభాషణలు
mesh-backlog = వర్తింపుకై వేచి ఉన్నవి
mesh-stored = నిల్వ
mesh-traffic = ట్రాఫిక్
mesh-traffic-value = { $in } వచ్చింది, { $out } వెళ్లింది
mesh-refused = తిరస్కరించినవి
mesh-connected = కనెక్ట్ అయిన సహచరులు
mesh-none-connected = ఏ సహచరుడూ కనెక్ట్ కాలేదు.
mesh-seen = కనిపించిన సహచరులు
mesh-none-seen = ఇంకా ఏ సహచరుడూ కనిపించలేదు.
mesh-unknown-peer = తెలియని పరికరం
mesh-since = కనెక్ట్ { $time }
mesh-last-seen = కనిపించింది { $time }
mesh-outbound = బయటికి
mesh-inbound = లోపలికి
mesh-static = స్థిర చిరునామా
mesh-unreachable = { $count } ప్రయత్నాల తర్వాత చేరలేదు
mesh-warnings = హెచ్చరికలు
transport-tcp = నెట్‌వర్క్ (TCP)
transport-quic = నెట్‌వర్క్ (QUIC)
transport-ble = బ్లూటూత్
transport-other = ఇతర
settings-title = సెట్టింగ్‌లు
settings-language = భాష
settings-theme = థీమ్
theme-system = పరికరం ప్రకారం
theme-light = లేత
theme-dark = ముదురు
settings-device = ఈ పరికరం
settings-safety = భద్రతా సంఖ్య
settings-signout = సైన్ అవుట్
error-generic = ఏదో తప్పు జరిగింది: { $error }
live-lost = లైవ్ అప్‌డేట్‌లు ఆగాయి, మళ్లీ కలుపుతోంది…
