# Vaarta web app, Hindi. Keys as in en.ftl (a test checks it).
app-title = वार्ता
nav-label = मुख्य
nav-conversations = चैट
nav-mesh = मेश
nav-settings = सेटिंग्स
loading = लोड हो रहा है…
signin-title = साइन इन करें
signin-help = इसी डिवाइस पर टर्मिनल में “vaarta open” चलाएँ और उसका दिया लिंक खोलें।
signin-failed = यह साइन-इन लिंक पहले ही इस्तेमाल हो चुका है या उसकी अवधि खत्म हो गई है।
offline-title = नोड नहीं चल रहा
offline-help = “vaarta up” से इसे शुरू करें, फिर यह पेज दोबारा लोड करें।
list-title = बातचीत
list-empty = अभी कोई बातचीत नहीं।
list-no-messages = अभी कोई संदेश नहीं
list-unread =
    { $count ->
        [one] { $count } अपठित
       *[other] { $count } अपठित
    }
conv-back = चैट पर वापस
conv-members =
    { $count ->
        [one] { $count } सदस्य
       *[other] { $count } सदस्य
    }
conv-empty = अभी कोई संदेश नहीं।
conv-you = आप
conv-reply = जवाब दें
conv-replying = { $name } को जवाब
conv-reply-cancel = जवाब रद्द करें
conv-in-reply = { $name } के जवाब में
conv-deleted = संदेश हटाया गया
conv-edited = संपादित
conv-new-alert = { $name } से नया { $precedence } संदेश
compose-label = संदेश
compose-placeholder = संदेश लिखें
compose-precedence = प्राथमिकता स्तर
compose-send = भेजें
compose-failed = नहीं भेजा गया: { $error }
prec-flash = फ़्लैश
prec-immediate = तत्काल
prec-priority = प्राथमिकता
prec-routine = सामान्य
state-received = प्राप्त
state-sent = भेजा गया
state-delivered = पहुँचा
state-delivered-count = { $n } में से { $k } तक पहुँचा
ack-button = पावती दें
ack-done = आपने पावती दी · { $time }
roll-title = हाज़िरी
roll-summary = { $ack } ने पावती दी · { $read } ने पढ़ा · { $delivered } तक पहुँचा · { $missing } तक नहीं पहुँचा
roll-acknowledged-at = पावती दी · { $time }
roll-read = पढ़ लिया
roll-delivered = पहुँचा, पढ़ा नहीं
roll-not-delivered = अभी नहीं पहुँचा
roll-realert = फिर से सचेत करें
roll-realerted =
    { $count ->
        [one] { $count } सदस्य को फिर से सचेत किया
       *[other] { $count } सदस्यों को फिर से सचेत किया
    }
mesh-title = मेश की स्थिति
mesh-state = नोड
mesh-online = ऑनलाइन
mesh-offline = ऑफ़लाइन
mesh-links = कनेक्शन
mesh-conversations = बातचीत
mesh-backlog = लागू होने की प्रतीक्षा में
mesh-stored = संग्रहीत
mesh-traffic = ट्रैफ़िक
mesh-traffic-value = { $in } आया, { $out } गया
mesh-refused = अस्वीकृत
mesh-connected = जुड़े हुए साथी
mesh-none-connected = कोई साथी नहीं जुड़ा।
mesh-seen = देखे गए साथी
mesh-none-seen = अभी कोई साथी नहीं दिखा।
mesh-unknown-peer = अज्ञात डिवाइस
mesh-since = जुड़ा { $time }
mesh-last-seen = देखा गया { $time }
mesh-outbound = बाहर जाने वाला
mesh-inbound = अंदर आने वाला
mesh-static = स्थायी पता
mesh-unreachable = { $count } प्रयासों के बाद भी नहीं पहुँचा
mesh-warnings = चेतावनियाँ
transport-tcp = नेटवर्क (TCP)
transport-quic = नेटवर्क (QUIC)
transport-ble = ब्लूटूथ
transport-other = अन्य
settings-title = सेटिंग्स
settings-language = भाषा
settings-theme = थीम
theme-system = डिवाइस के अनुसार
theme-light = हल्की
theme-dark = गहरी
settings-device = यह डिवाइस
settings-safety = सुरक्षा संख्या
settings-signout = साइन आउट
error-generic = कुछ गलत हुआ: { $error }
live-lost = लाइव अपडेट रुके हैं, फिर से जोड़ रहे हैं…
