# Vaarta web app, Tamil. Keys as in en.ftl (a test checks it).
app-title = வார்த்தா
nav-label = முதன்மை
nav-conversations = அரட்டைகள்
nav-mesh = மெஷ்
nav-settings = அமைப்புகள்
loading = ஏற்றுகிறது…
signin-title = உள்நுழை
signin-help = இந்தச் சாதனத்தில் டெர்மினலில் “vaarta open” இயக்கி, அது காட்டும் இணைப்பைத் திறக்கவும்.
signin-failed = இந்த உள்நுழைவு இணைப்பு ஏற்கெனவே பயன்படுத்தப்பட்டது அல்லது காலாவதியானது.
offline-title = நோட் இயங்கவில்லை
offline-help = “vaarta up” மூலம் தொடங்கி, இந்தப் பக்கத்தை மீண்டும் ஏற்றவும்.
list-title = உரையாடல்கள்
list-empty = இன்னும் உரையாடல்கள் இல்லை.
list-no-messages = இன்னும் செய்திகள் இல்லை
list-unread =
    { $count ->
        [one] { $count } படிக்காதது
       *[other] { $count } படிக்காதவை
    }
conv-back = அரட்டைகளுக்குத் திரும்பு
conv-members =
    { $count ->
        [one] { $count } உறுப்பினர்
       *[other] { $count } உறுப்பினர்கள்
    }
conv-empty = இன்னும் செய்திகள் இல்லை.
conv-you = நீங்கள்
conv-reply = பதில்
conv-replying = { $name } க்குப் பதில்
conv-reply-cancel = பதிலை ரத்துசெய்
conv-in-reply = { $name } க்குப் பதிலாக
conv-deleted = செய்தி நீக்கப்பட்டது
conv-edited = திருத்தப்பட்டது
conv-new-alert = { $name } இடமிருந்து புதிய { $precedence } செய்தி
compose-label = செய்தி
compose-placeholder = செய்தி எழுதுக
compose-precedence = முன்னுரிமை நிலை
compose-send = அனுப்பு
compose-failed = அனுப்பப்படவில்லை: { $error }
prec-flash = ஃபிளாஷ்
prec-immediate = உடனடி
prec-priority = முன்னுரிமை
prec-routine = வழக்கம்
state-received = பெறப்பட்டது
state-sent = அனுப்பப்பட்டது
state-delivered = சேர்ந்தது
state-delivered-count = { $n } இல் { $k } பேருக்குச் சேர்ந்தது
ack-button = பெற்றதை உறுதிசெய்
ack-done = நீங்கள் உறுதிசெய்தீர்கள் · { $time }
roll-title = வருகைப் பதிவு
roll-summary = { $ack } பேர் உறுதிசெய்தனர் · { $read } பேர் படித்தனர் · { $delivered } பேருக்குச் சேர்ந்தது · { $missing } பேருக்குச் சேரவில்லை
roll-acknowledged-at = உறுதிசெய்தார் · { $time }
roll-read = படித்தார்
roll-delivered = சேர்ந்தது, படிக்கவில்லை
roll-not-delivered = இன்னும் சேரவில்லை
roll-realert = மீண்டும் எச்சரி
roll-realerted =
    { $count ->
        [one] { $count } உறுப்பினருக்கு மீண்டும் எச்சரிக்கை அனுப்பப்பட்டது
       *[other] { $count } உறுப்பினர்களுக்கு மீண்டும் எச்சரிக்கை அனுப்பப்பட்டது
    }
mesh-title = மெஷ் நிலை
mesh-state = நோட்
mesh-online = இணைப்பில்
mesh-offline = இணைப்பில் இல்லை
mesh-links = இணைப்புகள்
mesh-conversations = உரையாடல்கள்
mesh-backlog = செயலாக்கக் காத்திருப்பவை
mesh-stored = சேமிப்பு
mesh-traffic = போக்குவரத்து
mesh-traffic-value = { $in } வந்தது, { $out } சென்றது
mesh-refused = மறுக்கப்பட்டவை
mesh-connected = இணைந்த சகாக்கள்
mesh-none-connected = எந்தச் சகாவும் இணையவில்லை.
mesh-seen = காணப்பட்ட சகாக்கள்
mesh-none-seen = இன்னும் எந்தச் சகாவும் காணப்படவில்லை.
mesh-unknown-peer = அறியாத சாதனம்
mesh-since = இணைந்தது { $time }
mesh-last-seen = கண்டது { $time }
mesh-outbound = வெளிச்செல்லும்
mesh-inbound = உள்வரும்
mesh-static = நிலையான முகவரி
mesh-unreachable = { $count } முயற்சிகளுக்குப் பிறகும் எட்டவில்லை
mesh-warnings = எச்சரிக்கைகள்
transport-tcp = பிணையம் (TCP)
transport-quic = பிணையம் (QUIC)
transport-ble = ப்ளூடூத்
transport-other = பிற
settings-title = அமைப்புகள்
settings-language = மொழி
settings-theme = தோற்றம்
theme-system = சாதனத்தைப் போல
theme-light = வெளிர்
theme-dark = இருள்
settings-device = இந்தச் சாதனம்
settings-safety = பாதுகாப்பு எண்
settings-signout = வெளியேறு
error-generic = ஏதோ தவறு நடந்தது: { $error }
live-lost = நேரடி புதுப்பிப்புகள் நின்றன, மீண்டும் இணைக்கிறது…
