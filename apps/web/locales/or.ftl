# Vaarta web app, Odia. Keys as in en.ftl (a test checks it).
app-title = ବାର୍ତ୍ତା
nav-label = ମୁଖ୍ୟ
nav-conversations = ଚାଟ୍
nav-mesh = ମେଶ୍
nav-settings = ସେଟିଂସ୍
loading = ଲୋଡ୍ ହେଉଛି…
signin-title = ସାଇନ୍ ଇନ୍
signin-help = ଏହି ଉପକରଣରେ ଟର୍ମିନାଲରେ “vaarta open” ଚଲାନ୍ତୁ ଏବଂ ଏହା ଦେଖାଉଥିବା ଲିଙ୍କ ଖୋଲନ୍ତୁ।
signin-failed = ଏହି ସାଇନ୍-ଇନ୍ ଲିଙ୍କ ପୂର୍ବରୁ ବ୍ୟବହୃତ ହୋଇସାରିଛି କିମ୍ବା ଏହାର ଅବଧି ସରିଯାଇଛି।
offline-title = ନୋଡ୍ ଚାଲୁନାହିଁ
offline-help = “vaarta up” ଦ୍ୱାରା ଆରମ୍ଭ କରନ୍ତୁ, ତା’ପରେ ଏହି ପୃଷ୍ଠା ପୁଣି ଲୋଡ୍ କରନ୍ତୁ।
list-title = ବାର୍ତ୍ତାଳାପ
list-empty = ଏପର୍ଯ୍ୟନ୍ତ କୌଣସି ବାର୍ତ୍ତାଳାପ ନାହିଁ।
list-no-messages = ଏପର୍ଯ୍ୟନ୍ତ କୌଣସି ସନ୍ଦେଶ ନାହିଁ
list-unread =
    { $count ->
        [one] { $count } ଅପଠିତ
       *[other] { $count } ଅପଠିତ
    }
conv-back = ଚାଟ୍‌କୁ ଫେରନ୍ତୁ
conv-members =
    { $count ->
        [one] { $count } ଜଣ ସଦସ୍ୟ
       *[other] { $count } ଜଣ ସଦସ୍ୟ
    }
conv-empty = ଏପର୍ଯ୍ୟନ୍ତ କୌଣସି ସନ୍ଦେଶ ନାହିଁ।
conv-you = ଆପଣ
conv-reply = ଉତ୍ତର
conv-replying = { $name }ଙ୍କୁ ଉତ୍ତର
conv-reply-cancel = ଉତ୍ତର ବାତିଲ୍
conv-in-reply = { $name }ଙ୍କ ଉତ୍ତରରେ
conv-deleted = ସନ୍ଦେଶ ବିଲୋପ ହୋଇଛି
conv-edited = ସମ୍ପାଦିତ
conv-new-alert = { $name }ଙ୍କଠାରୁ ନୂଆ { $precedence } ସନ୍ଦେଶ
compose-label = ସନ୍ଦେଶ
compose-placeholder = ସନ୍ଦେଶ ଲେଖନ୍ତୁ
compose-precedence = ପ୍ରାଥମିକତା ସ୍ତର
compose-send = ପଠାନ୍ତୁ
compose-failed = ପଠାଯାଇନାହିଁ: { $error }
prec-flash = ଫ୍ଲାସ୍
prec-immediate = ତୁରନ୍ତ
prec-priority = ପ୍ରାଥମିକତା
prec-routine = ସାଧାରଣ
state-received = ପ୍ରାପ୍ତ
state-sent = ପଠାଗଲା
state-delivered = ପହଞ୍ଚିଲା
state-delivered-count = { $n } ମଧ୍ୟରୁ { $k } ଜଣଙ୍କ ପାଖରେ ପହଞ୍ଚିଲା
ack-button = ପ୍ରାପ୍ତି ସ୍ୱୀକାର କରନ୍ତୁ
ack-done = ଆପଣ ପ୍ରାପ୍ତି ସ୍ୱୀକାର କଲେ · { $time }
roll-title = ହାଜିରା
roll-summary = { $ack } ଜଣ ସ୍ୱୀକାର କଲେ · { $read } ଜଣ ପଢ଼ିଲେ · { $delivered } ଜଣଙ୍କ ପାଖରେ ପହଞ୍ଚିଲା · { $missing } ଜଣଙ୍କ ପାଖରେ ପହଞ୍ଚିନାହିଁ
roll-acknowledged-at = ସ୍ୱୀକାର କଲେ · { $time }
roll-read = ପଢ଼ିଲେ
roll-delivered = ପହଞ୍ଚିଲା, ପଢ଼ିନାହାନ୍ତି
roll-not-delivered = ଏପର୍ଯ୍ୟନ୍ତ ପହଞ୍ଚିନାହିଁ
roll-realert = ପୁଣି ସତର୍କ କରନ୍ତୁ
roll-realerted =
    { $count ->
        [one] { $count } ଜଣ ସଦସ୍ୟଙ୍କୁ ପୁଣି ସତର୍କ କରାଗଲା
       *[other] { $count } ଜଣ ସଦସ୍ୟଙ୍କୁ ପୁଣି ସତର୍କ କରାଗଲା
    }
mesh-title = ମେଶ୍ ସ୍ଥିତି
mesh-state = ନୋଡ୍
mesh-online = ଅନଲାଇନ୍
mesh-offline = ଅଫଲାଇନ୍
mesh-links = ସଂଯୋଗ
mesh-conversations = ବାର୍ତ୍ତାଳାପ
mesh-backlog = ପ୍ରୟୋଗ ପାଇଁ ଅପେକ୍ଷାରେ
mesh-stored = ସଂରକ୍ଷିତ
mesh-traffic = ଟ୍ରାଫିକ୍
mesh-traffic-value = { $in } ଆସିଲା, { $out } ଗଲା
mesh-refused = ପ୍ରତ୍ୟାଖ୍ୟାତ
mesh-connected = ସଂଯୁକ୍ତ ସାଥୀ
mesh-none-connected = କୌଣସି ସାଥୀ ସଂଯୁକ୍ତ ନାହାନ୍ତି।
mesh-seen = ଦେଖାଯାଇଥିବା ସାଥୀ
mesh-none-seen = ଏପର୍ଯ୍ୟନ୍ତ କୌଣସି ସାଥୀ ଦେଖାଯାଇନାହାନ୍ତି।
mesh-unknown-peer = ଅଜଣା ଉପକରଣ
mesh-since = ସଂଯୁକ୍ତ { $time }
mesh-last-seen = ଦେଖାଗଲା { $time }
mesh-outbound = ବାହାରକୁ
mesh-inbound = ଭିତରକୁ
mesh-static = ସ୍ଥାୟୀ ଠିକଣା
mesh-unreachable = { $count } ଥର ଚେଷ୍ଟା ପରେ ବି ପହଞ୍ଚିଲା ନାହିଁ
mesh-warnings = ଚେତାବନୀ
transport-tcp = ନେଟୱାର୍କ (TCP)
transport-quic = ନେଟୱାର୍କ (QUIC)
transport-ble = ବ୍ଲୁଟୁଥ୍
transport-other = ଅନ୍ୟ
settings-title = ସେଟିଂସ୍
settings-language = ଭାଷା
settings-theme = ଥିମ୍
theme-system = ଉପକରଣ ଅନୁସାରେ
theme-light = ହାଲୁକା
theme-dark = ଗାଢ଼
settings-device = ଏହି ଉପକରଣ
settings-safety = ସୁରକ୍ଷା ସଂଖ୍ୟା
settings-signout = ସାଇନ୍ ଆଉଟ୍
error-generic = କିଛି ଭୁଲ୍ ହେଲା: { $error }
live-lost = ସିଧାସଳଖ ଅଦ୍ୟତନ ବନ୍ଦ, ପୁଣି ସଂଯୋଗ କରୁଛି…
