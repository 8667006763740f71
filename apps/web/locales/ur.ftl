# Vaarta web app, Urdu. Keys as in en.ftl (a test checks it).
app-title = وارتا
nav-label = مرکزی
nav-conversations = چیٹ
nav-mesh = میش
nav-settings = ترتیبات
loading = لوڈ ہو رہا ہے…
signin-title = سائن ان
signin-help = اسی آلے پر ٹرمینل میں “vaarta open” چلائیں اور جو لنک وہ دکھائے اسے کھولیں۔
signin-failed = یہ سائن اِن لنک پہلے ہی استعمال ہو چکا ہے یا اس کی میعاد ختم ہو گئی ہے۔
offline-title = نوڈ نہیں چل رہا
offline-help = اسے “vaarta up” سے شروع کریں، پھر یہ صفحہ دوبارہ لوڈ کریں۔
list-title = گفتگو
list-empty = ابھی کوئی گفتگو نہیں۔
list-no-messages = ابھی کوئی پیغام نہیں
list-unread =
    { $count ->
        [one] { $count } بغیر پڑھا
       *[other] { $count } بغیر پڑھے
    }
conv-back = چیٹ پر واپس
conv-members =
    { $count ->
        [one] { $count } رکن
       *[other] { $count } اراکین
    }
conv-empty = ابھی کوئی پیغام نہیں۔
conv-you = آپ
conv-reply = جواب
conv-replying = { $name } کو جواب
conv-reply-cancel = جواب منسوخ کریں
conv-in-reply = { $name } کے جواب میں
conv-deleted = پیغام حذف کر دیا گیا
conv-edited = ترمیم شدہ
conv-new-alert = { $name } کی طرف سے نیا { $precedence } پیغام
compose-label = پیغام
compose-placeholder = پیغام لکھیں
compose-precedence = ترجیحی درجہ
compose-send = بھیجیں
compose-failed = نہیں بھیجا گیا: { $error }
prec-flash = فلیش
prec-immediate = فوری
prec-priority = ترجیح
prec-routine = معمول
state-received = موصول
state-sent = بھیج دیا
state-delivered = پہنچ گیا
state-delivered-count = { $n } میں سے { $k } تک پہنچا
ack-button = وصولی کی تصدیق کریں
ack-done = آپ نے تصدیق کی · { $time }
roll-title = حاضری
roll-summary = { $ack } نے تصدیق کی · { $read } نے پڑھا · { $delivered } تک پہنچا · { $missing } تک نہیں پہنچا
roll-acknowledged-at = تصدیق کی · { $time }
roll-read = پڑھ لیا
roll-delivered = پہنچ گیا، پڑھا نہیں
roll-not-delivered = ابھی نہیں پہنچا
roll-realert = دوبارہ خبردار کریں
roll-realerted =
    { $count ->
        [one] { $count } رکن کو دوبارہ خبردار کیا گیا
       *[other] { $count } اراکین کو دوبارہ خبردار کیا گیا
    }
mesh-title = میش کی حالت
mesh-state = نوڈ
mesh-online = آن لائن
mesh-offline = آف لائن
mesh-links = رابطے
mesh-conversations = گفتگو
mesh-backlog = لاگو ہونے کے منتظر
mesh-stored = محفوظ
mesh-traffic = ٹریفک
mesh-traffic-value = { $in } آیا، { $out } گیا
mesh-refused = مسترد
mesh-connected = جڑے ہوئے ساتھی
mesh-none-connected = کوئی ساتھی نہیں جڑا۔
mesh-seen = دیکھے گئے ساتھی
mesh-none-seen = ابھی کوئی ساتھی نظر نہیں آیا۔
mesh-unknown-peer = نامعلوم آلہ
mesh-since = جڑا { $time }
mesh-last-seen = دیکھا گیا { $time }
mesh-outbound = باہر جانے والا
mesh-inbound = اندر آنے والا
mesh-static = مستقل پتہ
mesh-unreachable = { $count } کوششوں کے بعد بھی نہیں پہنچا
mesh-warnings = انتباہات
transport-tcp = نیٹ ورک (TCP)
transport-quic = نیٹ ورک (QUIC)
transport-ble = بلوٹوتھ
transport-other = دیگر
settings-title = ترتیبات
settings-language = زبان
settings-theme = تھیم
theme-system = آلے کے مطابق
theme-light = ہلکی
theme-dark = گہری
settings-device = یہ آلہ
settings-safety = حفاظتی نمبر
settings-signout = سائن آؤٹ
error-generic = کچھ غلط ہو گیا: { $error }
live-lost = براہ راست اپ ڈیٹس رکی ہیں، دوبارہ جوڑ رہے ہیں…
