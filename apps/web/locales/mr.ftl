# Vaarta web app, Marathi. Keys as in en.ftl (a test checks it).
app-title = वार्ता
nav-label = मुख्य
nav-conversations = चॅट
nav-mesh = मेश
nav-settings = सेटिंग्ज
loading = लोड होत आहे…
signin-title = साइन इन
signin-help = याच उपकरणावर टर्मिनलमध्ये “vaarta open” चालवा आणि त्याने दिलेली लिंक उघडा.
signin-failed = ही साइन-इन लिंक आधीच वापरली गेली आहे किंवा तिची मुदत संपली आहे.
offline-title = नोड चालू नाही
offline-help = “vaarta up” ने सुरू करा, मग हे पान पुन्हा लोड करा.
list-title = संभाषणे
list-empty = अजून कोणतेही संभाषण नाही.
list-no-messages = अजून संदेश नाहीत
list-unread =
    { $count ->
        [one] { $count } न वाचलेला
       *[other] { $count } न वाचलेले
    }
conv-back = चॅटकडे परत
conv-members =
    { $count ->
        [one] { $count } सदस्य
       *[other] { $count } सदस्य
    }
conv-empty = अजून संदेश नाहीत.
conv-you = तुम्ही
conv-reply = उत्तर
conv-replying = { $name } यांना उत्तर
conv-reply-cancel = उत्तर रद्द करा
conv-in-reply = { $name } यांना उत्तर म्हणून
conv-deleted = संदेश हटवला
conv-edited = संपादित
conv-new-alert = { $name } कडून नवा { $precedence } संदेश
compose-label = संदेश
compose-placeholder = संदेश लिहा
compose-precedence = प्राधान्य स्तर
compose-send = पाठवा
compose-failed = पाठवला नाही: { $error }
prec-flash = फ्लॅश
prec-immediate = तात्काळ
prec-priority = प्राधान्य
prec-routine = नेहमीचा
state-received = मिळाला
state-sent = पाठवला
state-delivered = पोहोचला
state-delivered-count = { $n } पैकी { $k } जणांना पोहोचला
ack-button = पोच द्या
ack-done = तुम्ही पोच दिली · { $time }
roll-title = हजेरी
roll-summary = { $ack } जणांनी पोच दिली · { $read } जणांनी वाचले · { $delivered } जणांपर्यंत पोहोचले · { $missing } जणांपर्यंत पोहोचले नाही
roll-acknowledged-at = पोच दिली · { $time }
roll-read = वाचले
roll-delivered = पोहोचले, वाचले नाही
roll-not-delivered = अजून पोहोचले नाही
roll-realert = पुन्हा सावध करा
roll-realerted =
    { $count ->
        [one] { $count } सदस्याला पुन्हा सावध केले
       *[other] { $count } सदस्यांना पुन्हा सावध केले
    }
mesh-title = मेशची स्थिती
mesh-state = नोड
mesh-online = ऑनलाइन
mesh-offline = ऑफलाइन
mesh-links = जोडण्या
mesh-conversations = संभाषणे
mesh-backlog = लागू होण्याच्या प्रतीक्षेत
mesh-stored = साठवलेले
mesh-traffic = ट्रॅफिक
mesh-traffic-value = { $in } आले, { $out } गेले
mesh-refused = नाकारलेले
mesh-connected = जोडलेले साथीदार
mesh-none-connected = कोणताही साथीदार जोडलेला नाही.
mesh-seen = दिसलेले साथीदार
mesh-none-seen = अजून कोणताही साथीदार दिसला नाही.
mesh-unknown-peer = अज्ञात उपकरण
mesh-since = जोडले { $time }
mesh-last-seen = दिसले { $time }
mesh-outbound = बाहेर जाणारे
mesh-inbound = आत येणारे
mesh-static = कायम पत्ता
mesh-unreachable = { $count } प्रयत्नांनंतरही पोहोचले नाही
mesh-warnings = इशारे
transport-tcp = नेटवर्क (TCP)
transport-quic = नेटवर्क (QUIC)
transport-ble = ब्लूटूथ
transport-other = इतर
settings-title = सेटिंग्ज
settings-language = भाषा
settings-theme = थीम
theme-system = उपकरणाप्रमाणे
theme-light = फिकट
theme-dark = गडद
settings-device = हे उपकरण
settings-safety = सुरक्षा क्रमांक
settings-signout = साइन आउट
error-generic = काहीतरी चुकले: { $error }
live-lost = थेट अपडेट थांबले, पुन्हा जोडत आहे…
