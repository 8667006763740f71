# Vaarta web app, Bengali. Keys as in en.ftl (a test checks it).
app-title = বার্তা
nav-label = প্রধান
nav-conversations = চ্যাট
nav-mesh = মেশ
nav-settings = সেটিংস
loading = লোড হচ্ছে…
signin-title = সাইন ইন
signin-help = এই ডিভাইসে টার্মিনালে “vaarta open” চালান এবং যে লিংক দেখায় সেটি খুলুন।
signin-failed = এই সাইন-ইন লিংক আগেই ব্যবহৃত হয়েছে বা মেয়াদ শেষ।
offline-title = নোড চলছে না
offline-help = “vaarta up” দিয়ে চালু করুন, তারপর পেজটি আবার লোড করুন।
list-title = কথোপকথন
list-empty = এখনও কোনো কথোপকথন নেই।
list-no-messages = এখনও কোনো বার্তা নেই
list-unread =
    { $count ->
        [one] { $count }টি অপঠিত
       *[other] { $count }টি অপঠিত
    }
conv-back = চ্যাটে ফিরুন
conv-members =
    { $count ->
        [one] { $count } জন সদস্য
       *[other] { $count } জন সদস্য
    }
conv-empty = এখনও কোনো বার্তা নেই।
conv-you = আপনি
conv-reply = উত্তর
conv-replying = { $name }-কে উত্তর
conv-reply-cancel = উত্তর বাতিল
conv-in-reply = { $name }-এর উত্তরে
conv-deleted = বার্তা মুছে ফেলা হয়েছে
conv-edited = সম্পাদিত
conv-new-alert = { $name }-এর নতুন { $precedence } বার্তা
compose-label = বার্তা
compose-placeholder = বার্তা লিখুন
compose-precedence = অগ্রাধিকার স্তর
compose-send = পাঠান
compose-failed = পাঠানো যায়নি: { $error }
prec-flash = ফ্ল্যাশ
prec-immediate = অবিলম্বে
prec-priority = অগ্রাধিকার
prec-routine = সাধারণ
state-received = প্রাপ্ত
state-sent = পাঠানো হয়েছে
state-delivered = পৌঁছেছে
state-delivered-count = { $n } জনের মধ্যে { $k } জনের কাছে পৌঁছেছে
ack-button = প্রাপ্তি স্বীকার করুন
ack-done = আপনি প্রাপ্তি স্বীকার করেছেন · { $time }
roll-title = হাজিরা
roll-summary = { $ack } জন প্রাপ্তি স্বীকার করেছেন · { $read } জন পড়েছেন · { $delivered } জনের কাছে পৌঁছেছে · { $missing } জনের কাছে পৌঁছায়নি
roll-acknowledged-at = প্রাপ্তি স্বীকার করেছেন · { $time }
roll-read = পড়েছেন
roll-delivered = পৌঁছেছে, পড়েননি
roll-not-delivered = এখনও পৌঁছায়নি
roll-realert = আবার সতর্ক করুন
roll-realerted =
    { $count ->
        [one] { $count } জন সদস্যকে আবার সতর্ক করা হয়েছে
       *[other] { $count } জন সদস্যকে আবার সতর্ক করা হয়েছে
    }
mesh-title = মেশের অবস্থা
mesh-state = নোড
mesh-online = অনলাইন
mesh-offline = অফলাইন
mesh-links = সংযোগ
mesh-conversations = কথোপকথন
mesh-backlog = প্রয়োগের অপেক্ষায়
mesh-stored = সংরক্ষিত
mesh-traffic = ট্রাফিক
mesh-traffic-value = { $in } এসেছে, { $out } গেছে
mesh-refused = প্রত্যাখ্যাত
mesh-connected = সংযুক্ত সঙ্গী
mesh-none-connected = কোনো সঙ্গী সংযুক্ত নেই।
mesh-seen = দেখা সঙ্গী
mesh-none-seen = এখনও কোনো সঙ্গী দেখা যায়নি।
mesh-unknown-peer = অজানা ডিভাইস
mesh-since = সংযুক্ত { $time }
mesh-last-seen = দেখা গেছে { $time }
mesh-outbound = বহির্গামী
mesh-inbound = আগত
mesh-static = স্থায়ী ঠিকানা
mesh-unreachable = { $count } বার চেষ্টার পরেও পৌঁছানো যায়নি
mesh-warnings = সতর্কতা
transport-tcp = নেটওয়ার্ক (TCP)
transport-quic = নেটওয়ার্ক (QUIC)
transport-ble = ব্লুটুথ
transport-other = অন্যান্য
settings-title = সেটিংস
settings-language = ভাষা
settings-theme = থিম
theme-system = ডিভাইসের মতো
theme-light = হালকা
theme-dark = গাঢ়
settings-device = এই ডিভাইস
settings-safety = নিরাপত্তা নম্বর
settings-signout = সাইন আউট
error-generic = কিছু ভুল হয়েছে: { $error }
live-lost = লাইভ আপডেট থেমে আছে, আবার সংযোগ হচ্ছে…
