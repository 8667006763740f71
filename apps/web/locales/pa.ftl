# Vaarta web app, Punjabi (Gurmukhi). Keys as in en.ftl (a test checks it).
app-title = ਵਾਰਤਾ
nav-label = ਮੁੱਖ
nav-conversations = ਚੈਟ
nav-mesh = ਮੈਸ਼
nav-settings = ਸੈਟਿੰਗਾਂ
loading = ਲੋਡ ਹੋ ਰਿਹਾ ਹੈ…
signin-title = ਸਾਈਨ ਇਨ
signin-help = ਇਸੇ ਡਿਵਾਈਸ ’ਤੇ ਟਰਮੀਨਲ ਵਿੱਚ “vaarta open” ਚਲਾਓ ਅਤੇ ਜੋ ਲਿੰਕ ਦਿਖਾਏ ਉਹ ਖੋਲ੍ਹੋ।
signin-failed = ਇਹ ਸਾਈਨ-ਇਨ ਲਿੰਕ ਪਹਿਲਾਂ ਹੀ ਵਰਤਿਆ ਜਾ ਚੁੱਕਾ ਹੈ ਜਾਂ ਇਸ ਦੀ ਮਿਆਦ ਖਤਮ ਹੋ ਗਈ ਹੈ।
offline-title = ਨੋਡ ਨਹੀਂ ਚੱਲ ਰਿਹਾ
offline-help = “vaarta up” ਨਾਲ ਸ਼ੁਰੂ ਕਰੋ, ਫਿਰ ਇਹ ਪੰਨਾ ਦੁਬਾਰਾ ਲੋਡ ਕਰੋ।
list-title = ਗੱਲਬਾਤਾਂ
list-empty = ਅਜੇ ਕੋਈ ਗੱਲਬਾਤ ਨਹੀਂ।
list-no-messages = ਅਜੇ ਕੋਈ ਸੁਨੇਹਾ ਨਹੀਂ
list-unread =
    { $count ->
        [one] { $count } ਅਣਪੜ੍ਹਿਆ
       *[other] { $count } ਅਣਪੜ੍ਹੇ
    }
conv-back = ਚੈਟ ’ਤੇ ਵਾਪਸ
conv-members =
    { $count ->
        [one] { $count } ਮੈਂਬਰ
       *[other] { $count } ਮੈਂਬਰ
    }
conv-empty = ਅਜੇ ਕੋਈ ਸੁਨੇਹਾ ਨਹੀਂ।
conv-you = ਤੁਸੀਂ
conv-reply = ਜਵਾਬ
conv-replying = { $name } ਨੂੰ ਜਵਾਬ
conv-reply-cancel = ਜਵਾਬ ਰੱਦ ਕਰੋ
conv-in-reply = { $name } ਦੇ ਜਵਾਬ ਵਿੱਚ
conv-deleted = ਸੁਨੇਹਾ ਮਿਟਾਇਆ ਗਿਆ
conv-edited = ਸੋਧਿਆ
conv-new-alert = { $name } ਵੱਲੋਂ ਨਵਾਂ { $precedence } ਸੁਨੇਹਾ
compose-label = ਸੁਨੇਹਾ
compose-placeholder = ਸੁਨੇਹਾ ਲਿਖੋ
compose-precedence = ਤਰਜੀਹ ਪੱਧਰ
compose-send = ਭੇਜੋ
compose-failed = ਨਹੀਂ ਭੇਜਿਆ: { $error }
prec-flash = ਫਲੈਸ਼
prec-immediate = ਤੁਰੰਤ
prec-priority = ਤਰਜੀਹ
prec-routine = ਆਮ
state-received = ਮਿਲਿਆ
state-sent = ਭੇਜਿਆ
state-delivered = ਪਹੁੰਚਿਆ
state-delivered-count = { $n } ਵਿੱਚੋਂ { $k } ਤੱਕ ਪਹੁੰਚਿਆ
ack-button = ਪ੍ਰਾਪਤੀ ਦੀ ਪੁਸ਼ਟੀ ਕਰੋ
ack-done = ਤੁਸੀਂ ਪੁਸ਼ਟੀ ਕੀਤੀ · { $time }
roll-title = ਹਾਜ਼ਰੀ
roll-summary = { $ack } ਨੇ ਪੁਸ਼ਟੀ ਕੀਤੀ · { $read } ਨੇ ਪੜ੍ਹਿਆ · { $delivered } ਤੱਕ ਪਹੁੰਚਿਆ · { $missing } ਤੱਕ ਨਹੀਂ ਪਹੁੰਚਿਆ
roll-acknowledged-at = ਪੁਸ਼ਟੀ ਕੀਤੀ · { $time }
roll-read = ਪੜ੍ਹ ਲਿਆ
roll-delivered = ਪਹੁੰਚਿਆ, ਪੜ੍ਹਿਆ ਨਹੀਂ
roll-not-delivered = ਹਾਲੇ ਨਹੀਂ ਪਹੁੰਚਿਆ
roll-realert = ਮੁੜ ਚੇਤਾਵਨੀ ਦਿਓ
roll-realerted =
    { $count ->
        [one] { $count } ਮੈਂਬਰ ਨੂੰ ਮੁੜ ਚੇਤਾਵਨੀ ਦਿੱਤੀ
       *[other] { $count } ਮੈਂਬਰਾਂ ਨੂੰ ਮੁੜ ਚੇਤਾਵਨੀ ਦਿੱਤੀ
    }
mesh-title = ਮੈਸ਼ ਦੀ ਹਾਲਤ
mesh-state = ਨੋਡ
mesh-online = ਔਨਲਾਈਨ
mesh-offline = ਔਫਲਾਈਨ
mesh-links = ਕਨੈਕਸ਼ਨ
mesh-conversations = ਗੱਲਬਾਤਾਂ
mesh-backlog = ਲਾਗੂ ਹੋਣ ਦੀ ਉਡੀਕ ਵਿੱਚ
mesh-stored = ਸਟੋਰ ਕੀਤਾ
mesh-traffic = ਟ੍ਰੈਫਿਕ
mesh-traffic-value = { $in } ਆਇਆ, { $out } ਗਿਆ
mesh-refused = ਨਾਮਨਜ਼ੂਰ
mesh-connected = ਜੁੜੇ ਸਾਥੀ
mesh-none-connected = ਕੋਈ ਸਾਥੀ ਨਹੀਂ ਜੁੜਿਆ।
mesh-seen = ਦੇਖੇ ਗਏ ਸਾਥੀ
mesh-none-seen = ਅਜੇ ਕੋਈ ਸਾਥੀ ਨਹੀਂ ਦਿਖਿਆ।
mesh-unknown-peer = ਅਣਜਾਣ ਡਿਵਾਈਸ
mesh-since = ਜੁੜਿਆ { $time }
mesh-last-seen = ਦੇਖਿਆ { $time }
mesh-outbound = ਬਾਹਰ ਜਾਂਦਾ
mesh-inbound = ਅੰਦਰ ਆਉਂਦਾ
mesh-static = ਪੱਕਾ ਪਤਾ
mesh-unreachable = { $count } ਕੋਸ਼ਿਸ਼ਾਂ ਮਗਰੋਂ ਵੀ ਨਹੀਂ ਪਹੁੰਚਿਆ
mesh-warnings = ਚੇਤਾਵਨੀਆਂ
transport-tcp = ਨੈੱਟਵਰਕ (TCP)
transport-quic = ਨੈੱਟਵਰਕ (QUIC)
transport-ble = ਬਲੂਟੁੱਥ
transport-other = ਹੋਰ
settings-title = ਸੈਟਿੰਗਾਂ
settings-language = ਭਾਸ਼ਾ
settings-theme = ਥੀਮ
theme-system = ਡਿਵਾਈਸ ਵਾਂਗ
theme-light = ਹਲਕੀ
theme-dark = ਗੂੜ੍ਹੀ
settings-device = ਇਹ ਡਿਵਾਈਸ
settings-safety = ਸੁਰੱਖਿਆ ਨੰਬਰ
settings-signout = ਸਾਈਨ ਆਉਟ
error-generic = ਕੁਝ ਗਲਤ ਹੋ ਗਿਆ: { $error }
live-lost = ਲਾਈਵ ਅੱਪਡੇਟ ਰੁਕੇ ਹਨ, ਮੁੜ ਜੋੜ ਰਹੇ ਹਾਂ…
