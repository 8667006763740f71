# Vaarta web app, Kannada. Keys as in en.ftl (a test checks it).
app-title = ವಾರ್ತಾ
nav-label = ಮುಖ್ಯ
nav-conversations = ಚಾಟ್‌ಗಳು
nav-mesh = ಮೆಶ್
nav-settings = ಸೆಟ್ಟಿಂಗ್‌ಗಳು
loading = ಲೋಡ್ ಆಗುತ್ತಿದೆ…
signin-title = ಸೈನ್ ಇನ್
signin-help = ಇದೇ ಸಾಧನದಲ್ಲಿ ಟರ್ಮಿನಲ್‌ನಲ್ಲಿ “vaarta open” ಚಲಾಯಿಸಿ, ಅದು ತೋರಿಸುವ ಲಿಂಕ್ ತೆರೆಯಿರಿ.
signin-failed = ಈ ಸೈನ್-ಇನ್ ಲಿಂಕ್ ಈಗಾಗಲೇ ಬಳಸಲಾಗಿದೆ ಅಥವಾ ಅವಧಿ ಮುಗಿದಿದೆ.
offline-title = ನೋಡ್ ಚಾಲನೆಯಲ್ಲಿಲ್ಲ
offline-help = “vaarta up” ಮೂಲಕ ಆರಂಭಿಸಿ, ನಂತರ ಈ ಪುಟವನ್ನು ಮತ್ತೆ ಲೋಡ್ ಮಾಡಿ.
list-title = ಸಂಭಾಷಣೆಗಳು
list-empty = ಇನ್ನೂ ಯಾವುದೇ ಸಂಭಾಷಣೆ ಇಲ್ಲ.
list-no-messages = ಇನ್ನೂ ಸಂದೇಶಗಳಿಲ್ಲ
list-unread =
    { $count ->
        [one] { $count } ಓದದ್ದು
       *[other] { $count } ಓದದವು
    }
conv-back = ಚಾಟ್‌ಗಳಿಗೆ ಹಿಂದಕ್ಕೆ
conv-members =
    { $count ->
        [one] { $count } ಸದಸ್ಯ
       *[other] { $count } ಸದಸ್ಯರು
    }
conv-empty = ಇನ್ನೂ ಸಂದೇಶಗಳಿಲ್ಲ.
conv-you = ನೀವು
conv-reply = ಉತ್ತರಿಸಿ
conv-replying = { $name } ಅವರಿಗೆ ಉತ್ತರ
conv-reply-cancel = ಉತ್ತರ ರದ್ದುಮಾಡಿ
conv-in-reply = { $name } ಅವರಿಗೆ ಉತ್ತರವಾಗಿ
conv-deleted = ಸಂದೇಶ ಅಳಿಸಲಾಗಿದೆ
conv-edited = ಸಂಪಾದಿಸಲಾಗಿದೆ
conv-new-alert = { $name } ಅವರಿಂದ ಹೊಸ { $precedence } ಸಂದೇಶ
compose-label = ಸಂದೇಶ
compose-placeholder = ಸಂದೇಶ ಬರೆಯಿರಿ
compose-precedence = ಆದ್ಯತೆ ಮಟ್ಟ
compose-send = ಕಳುಹಿಸಿ
compose-failed = ಕಳುಹಿಸಲಾಗಿಲ್ಲ: { $error }
prec-flash = ಫ್ಲ್ಯಾಶ್
prec-immediate = ತಕ್ಷಣ
prec-priority = ಆದ್ಯತೆ
prec-routine = ಸಾಮಾನ್ಯ
state-received = ಸ್ವೀಕರಿಸಲಾಗಿದೆ
state-sent = ಕಳುಹಿಸಲಾಗಿದೆ
state-delivered = ತಲುಪಿದೆ
state-delivered-count = { $n } ರಲ್ಲಿ { $k } ಜನರಿಗೆ ತಲುಪಿದೆ
ack-button = ತಲುಪಿದ್ದನ್ನು ದೃಢೀಕರಿಸಿ
ack-done = ನೀವು ದೃಢೀಕರಿಸಿದ್ದೀರಿ · { $time }
roll-title = ಹಾಜರಾತಿ
roll-summary = { $ack } ದೃಢೀಕರಿಸಿದರು · { $read } ಓದಿದರು · { $delivered } ಜನರಿಗೆ ತಲುಪಿದೆ · { $missing } ಜನರಿಗೆ ತಲುಪಿಲ್ಲ
roll-acknowledged-at = ದೃಢೀಕರಿಸಿದರು · { $time }
roll-read = ಓದಿದರು
roll-delivered = ತಲುಪಿದೆ, ಓದಿಲ್ಲ
roll-not-delivered = ಇನ್ನೂ ತಲುಪಿಲ್ಲ
roll-realert = ಮತ್ತೆ ಎಚ್ಚರಿಸಿ
roll-realerted =
    { $count ->
        [one] { $count } ಸದಸ್ಯರನ್ನು ಮತ್ತೆ ಎಚ್ಚರಿಸಲಾಗಿದೆ
       *[other] { $count } ಸದಸ್ಯರನ್ನು ಮತ್ತೆ ಎಚ್ಚರಿಸಲಾಗಿದೆ
    }
mesh-title = ಮೆಶ್ ಸ್ಥಿತಿ
mesh-state = ನೋಡ್
mesh-online = ಆನ್‌ಲೈನ್
mesh-offline = ಆಫ್‌ಲೈನ್
mesh-links = ಸಂಪರ್ಕಗಳು
mesh-conversations = ಸಂಭಾಷಣೆಗಳು
mesh-backlog = ಅನ್ವಯಕ್ಕಾಗಿ ಕಾಯುತ್ತಿರುವವು
mesh-stored = ಸಂಗ್ರಹಿತ
mesh-traffic = ಸಂಚಾರ
mesh-traffic-value = { $in } ಬಂದಿದೆ, { $out } ಹೋಗಿದೆ
mesh-refused = ತಿರಸ್ಕೃತ
mesh-connected = ಸಂಪರ್ಕಿತ ಸಹವರ್ತಿಗಳು
mesh-none-connected = ಯಾವ ಸಹವರ್ತಿಯೂ ಸಂಪರ್ಕದಲ್ಲಿಲ್ಲ.
mesh-seen = ಕಂಡ ಸಹವರ್ತಿಗಳು
mesh-none-seen = ಇನ್ನೂ ಯಾವ ಸಹವರ್ತಿಯೂ ಕಂಡಿಲ್ಲ.
mesh-unknown-peer = ಅಪರಿಚಿತ ಸಾಧನ
mesh-since = ಸಂಪರ್ಕ { $time }
mesh-last-seen = ಕಂಡದ್ದು { $time }
mesh-outbound = ಹೊರಹೋಗುವ
mesh-inbound = ಒಳಬರುವ
mesh-static = ಸ್ಥಿರ ವಿಳಾಸ
mesh-unreachable = { $count } ಪ್ರಯತ್ನಗಳ ನಂತರವೂ ತಲುಪಿಲ್ಲ
mesh-warnings = ಎಚ್ಚರಿಕೆಗಳು
transport-tcp = ಜಾಲ (TCP)
transport-quic = ಜಾಲ (QUIC)
transport-ble = ಬ್ಲೂಟೂತ್
transport-other = ಇತರ
settings-title = ಸೆಟ್ಟಿಂಗ್‌ಗಳು
settings-language = ಭಾಷೆ
settings-theme = ಥೀಮ್
theme-system = ಸಾಧನದಂತೆ
theme-light = ತಿಳಿ
theme-dark = ಗಾಢ
settings-device = ಈ ಸಾಧನ
settings-safety = ಸುರಕ್ಷತಾ ಸಂಖ್ಯೆ
settings-signout = ಸೈನ್ ಔಟ್
error-generic = ಏನೋ ತಪ್ಪಾಗಿದೆ: { $error }
live-lost = ನೇರ ನವೀಕರಣ ನಿಂತಿದೆ, ಮರುಸಂಪರ್ಕಿಸುತ್ತಿದೆ…
