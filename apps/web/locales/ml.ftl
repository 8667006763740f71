# Vaarta web app, Malayalam. Keys as in en.ftl (a test checks it).
app-title = വാർത്ത
nav-label = പ്രധാനം
nav-conversations = ചാറ്റുകൾ
nav-mesh = മെഷ്
nav-settings = ക്രമീകരണം
loading = ലോഡ് ചെയ്യുന്നു…
signin-title = സൈൻ ഇൻ
signin-help = ഇതേ ഉപകരണത്തിൽ ടെർമിനലിൽ “vaarta open” പ്രവർത്തിപ്പിച്ച് അത് കാണിക്കുന്ന ലിങ്ക് തുറക്കുക.
signin-failed = ഈ സൈൻ-ഇൻ ലിങ്ക് ഇതിനകം ഉപയോഗിച്ചു അല്ലെങ്കിൽ കാലാവധി കഴിഞ്ഞു.
offline-title = നോഡ് പ്രവർത്തിക്കുന്നില്ല
offline-help = “vaarta up” ഉപയോഗിച്ച് ആരംഭിച്ച് ഈ പേജ് വീണ്ടും ലോഡ് ചെയ്യുക.
list-title = സംഭാഷണങ്ങൾ
list-empty = ഇതുവരെ സംഭാഷണങ്ങളില്ല.
list-no-messages = ഇതുവരെ സന്ദേശങ്ങളില്ല
list-unread =
    { $count ->
        [one] { $count } വായിക്കാത്തത്
       *[other] { $count } വായിക്കാത്തവ
    }
conv-back = ചാറ്റുകളിലേക്ക് മടങ്ങുക
conv-members =
    { $count ->
        [one] { $count } അംഗം
       *[other] { $count } അംഗങ്ങൾ
    }
conv-empty = ഇതുവരെ സന്ദേശങ്ങളില്ല.
conv-you = നിങ്ങൾ
conv-reply = മറുപടി
conv-replying = { $name }-ന് മറുപടി
conv-reply-cancel = മറുപടി റദ്ദാക്കുക
conv-in-reply = { $name }-ന് മറുപടിയായി
conv-deleted = സന്ദേശം ഇല്ലാതാക്കി
conv-edited = തിരുത്തി
conv-new-alert = { $name }-ൽ നിന്ന് പുതിയ { $precedence } സന്ദേശം
compose-label = സന്ദേശം
compose-placeholder = സന്ദേശം എഴുതുക
compose-precedence = മുൻഗണനാ നില
compose-send = അയയ്ക്കുക
compose-failed = അയച്ചില്ല: { $error }
prec-flash = ഫ്ലാഷ്
prec-immediate = അടിയന്തരം
prec-priority = മുൻഗണന
prec-routine = സാധാരണ
state-received = ലഭിച്ചു
state-sent = അയച്ചു
state-delivered = എത്തി
state-delivered-count = { $n } പേരിൽ { $k } പേർക്ക് എത്തി
ack-button = ലഭിച്ചെന്ന് സ്ഥിരീകരിക്കുക
ack-done = നിങ്ങൾ സ്ഥിരീകരിച്ചു · { $time }
roll-title = ഹാജർ
roll-summary = { $ack } പേർ സ്ഥിരീകരിച്ചു · { $read } പേർ വായിച്ചു · { $delivered } പേർക്ക് എത്തി · { $missing } പേർക്ക് എത്തിയില്ല
roll-acknowledged-at = സ്ഥിരീകരിച്ചു · { $time }
roll-read = വായിച്ചു
roll-delivered = എത്തി, വായിച്ചില്ല
roll-not-delivered = ഇതുവരെ എത്തിയില്ല
roll-realert = വീണ്ടും മുന്നറിയിപ്പ് നൽകുക
roll-realerted =
    { $count ->
        [one] { $count } അംഗത്തിന് വീണ്ടും മുന്നറിയിപ്പ് നൽകി
       *[other] { $count } അംഗങ്ങൾക്ക് വീണ്ടും മുന്നറിയിപ്പ് നൽകി
    }
mesh-title = മെഷ് നില
mesh-state = നോഡ്
mesh-online = ഓൺലൈൻ
mesh-offline = ഓഫ്‌ലൈൻ
mesh-links = കണക്ഷനുകൾ
mesh-conversations = സംഭാഷണങ്ങൾ
mesh-backlog = പ്രയോഗിക്കാൻ കാത്തിരിക്കുന്നവ
mesh-stored = സംഭരിച്ചത്
mesh-traffic = ട്രാഫിക്
mesh-traffic-value = { $in } വന്നു, { $out } പോയി
mesh-refused = നിരസിച്ചവ
mesh-connected = ബന്ധിപ്പിച്ച സഹചാരികൾ
mesh-none-connected = ഒരു സഹചാരിയും ബന്ധിപ്പിച്ചിട്ടില്ല.
mesh-seen = കണ്ട സഹചാരികൾ
mesh-none-seen = ഇതുവരെ ഒരു സഹചാരിയെയും കണ്ടില്ല.
mesh-unknown-peer = അജ്ഞാത ഉപകരണം
mesh-since = ബന്ധിപ്പിച്ചത് { $time }
mesh-last-seen = കണ്ടത് { $time }
mesh-outbound = പുറത്തേക്ക്
mesh-inbound = അകത്തേക്ക്
mesh-static = സ്ഥിര വിലാസം
mesh-unreachable = { $count } ശ്രമങ്ങൾക്ക് ശേഷവും എത്തിയില്ല
mesh-warnings = മുന്നറിയിപ്പുകൾ
transport-tcp = നെറ്റ്‌വർക്ക് (TCP)
transport-quic = നെറ്റ്‌വർക്ക് (QUIC)
transport-ble = ബ്ലൂടൂത്ത്
transport-other = മറ്റുള്ളവ
settings-title = ക്രമീകരണങ്ങൾ
settings-language = ഭാഷ
settings-theme = തീം
theme-system = ഉപകരണം പോലെ
theme-light = ഇളം
theme-dark = ഇരുണ്ട
settings-device = ഈ ഉപകരണം
settings-safety = സുരക്ഷാ നമ്പർ
settings-signout = സൈൻ ഔട്ട്
error-generic = എന്തോ പിശക് സംഭവിച്ചു: { $error }
live-lost = തത്സമയ അപ്ഡേറ്റുകൾ നിലച്ചു, വീണ്ടും ബന്ധിപ്പിക്കുന്നു…
