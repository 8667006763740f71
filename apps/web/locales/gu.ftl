# Vaarta web app, Gujarati. Keys as in en.ftl (a test checks it).
app-title = વાર્તા
nav-label = મુખ્ય
nav-conversations = ચેટ
nav-mesh = મેશ
nav-settings = સેટિંગ્સ
loading = લોડ થઈ રહ્યું છે…
signin-title = સાઇન ઇન
signin-help = આ જ ઉપકરણ પર ટર્મિનલમાં “vaarta open” ચલાવો અને તે બતાવે તે લિંક ખોલો.
signin-failed = આ સાઇન-ઇન લિંક પહેલેથી વપરાઈ ગઈ છે અથવા તેની મુદત પૂરી થઈ ગઈ છે.
offline-title = નોડ ચાલતું નથી
offline-help = “vaarta up” થી શરૂ કરો, પછી આ પેજ ફરી લોડ કરો.
list-title = વાતચીત
list-empty = હજી કોઈ વાતચીત નથી.
list-no-messages = હજી કોઈ સંદેશ નથી
list-unread =
    { $count ->
        [one] { $count } વણવાંચેલો
       *[other] { $count } વણવાંચેલા
    }
conv-back = ચેટ પર પાછા
conv-members =
    { $count ->
        [one] { $count } સભ્ય
       *[other] { $count } સભ્યો
    }
conv-empty = હજી કોઈ સંદેશ નથી.
conv-you = તમે
conv-reply = જવાબ
conv-replying = { $name }ને જવાબ
conv-reply-cancel = જવાબ રદ કરો
conv-in-reply = { $name }ના જવાબમાં
conv-deleted = સંદેશ કાઢી નાખ્યો
conv-edited = સંપાદિત
conv-new-alert = { $name } તરફથી નવો { $precedence } સંદેશ
compose-label = સંદેશ
compose-placeholder = સંદેશ લખો
compose-precedence = પ્રાથમિકતા સ્તર
compose-send = મોકલો
compose-failed = મોકલાયો નથી: { $error }
prec-flash = ફ્લેશ
prec-immediate = તાત્કાલિક
prec-priority = પ્રાથમિકતા
prec-routine = સામાન્ય
state-received = મળ્યો
state-sent = મોકલ્યો
state-delivered = પહોંચ્યો
state-delivered-count = { $n } માંથી { $k } સુધી પહોંચ્યો
ack-button = મળ્યાની પુષ્ટિ કરો
ack-done = તમે પુષ્ટિ કરી · { $time }
roll-title = હાજરી
roll-summary = { $ack } એ પુષ્ટિ કરી · { $read } એ વાંચ્યું · { $delivered } સુધી પહોંચ્યું · { $missing } સુધી પહોંચ્યું નથી
roll-acknowledged-at = પુષ્ટિ કરી · { $time }
roll-read = વાંચ્યું
roll-delivered = પહોંચ્યું, વાંચ્યું નથી
roll-not-delivered = હજી પહોંચ્યું નથી
roll-realert = ફરી ચેતવો
roll-realerted =
    { $count ->
        [one] { $count } સભ્યને ફરી ચેતવ્યા
       *[other] { $count } સભ્યોને ફરી ચેતવ્યા
    }
mesh-title = મેશની સ્થિતિ
mesh-state = નોડ
mesh-online = ઓનલાઇન
mesh-offline = ઓફલાઇન
mesh-links = જોડાણો
mesh-conversations = વાતચીત
mesh-backlog = લાગુ થવાની રાહમાં
mesh-stored = સંગ્રહિત
mesh-traffic = ટ્રાફિક
mesh-traffic-value = { $in } આવ્યું, { $out } ગયું
mesh-refused = નકારેલા
mesh-connected = જોડાયેલા સાથીઓ
mesh-none-connected = કોઈ સાથી જોડાયેલ નથી.
mesh-seen = જોયેલા સાથીઓ
mesh-none-seen = હજી કોઈ સાથી દેખાયો નથી.
mesh-unknown-peer = અજાણ્યું ઉપકરણ
mesh-since = જોડાયું { $time }
mesh-last-seen = જોયું { $time }
mesh-outbound = બહાર જતું
mesh-inbound = અંદર આવતું
mesh-static = સ્થાયી સરનામું
mesh-unreachable = { $count } પ્રયાસો પછી પણ પહોંચ્યું નથી
mesh-warnings = ચેતવણીઓ
transport-tcp = નેટવર્ક (TCP)
transport-quic = નેટવર્ક (QUIC)
transport-ble = બ્લૂટૂથ
transport-other = અન્ય
settings-title = સેટિંગ્સ
settings-language = ભાષા
settings-theme = થીમ
theme-system = ઉપકરણ મુજબ
theme-light = આછી
theme-dark = ઘેરી
settings-device = આ ઉપકરણ
settings-safety = સુરક્ષા નંબર
settings-signout = સાઇન આઉટ
error-generic = કંઈક ખોટું થયું: { $error }
live-lost = લાઇવ અપડેટ અટક્યા છે, ફરી જોડાઈ રહ્યું છે…
