# Vaarta web app, English (the reference catalogue: every other one has exactly these keys).
app-title = Vaarta
nav-label = Main
nav-conversations = Chats
nav-mesh = Mesh
nav-settings = Settings
loading = Loading…
signin-title = Sign in
signin-help = On this device, run “vaarta open” in a terminal and open the link it prints.
signin-failed = That sign-in link was already used or has expired.
offline-title = Node not running
offline-help = Start it with “vaarta up”, then reload this page.
list-title = Conversations
list-empty = No conversations yet.
list-no-messages = No messages yet
list-unread =
    { $count ->
        [one] { $count } unread
       *[other] { $count } unread
    }
conv-back = Back to chats
conv-members =
    { $count ->
        [one] { $count } member
       *[other] { $count } members
    }
conv-empty = No messages yet.
conv-you = You
conv-reply = Reply
conv-replying = Replying to { $name }
conv-reply-cancel = Cancel reply
conv-in-reply = In reply to { $name }
conv-deleted = Message deleted
conv-edited = edited
conv-new-alert = New { $precedence } message from { $name }
compose-label = Message
compose-placeholder = Write a message
compose-precedence = Precedence
compose-send = Send
compose-failed = Not sent: { $error }
prec-flash = FLASH
prec-immediate = IMMEDIATE
prec-priority = Priority
prec-routine = Routine
state-received = Received
state-sent = Sent
state-delivered = Delivered
state-delivered-count = Delivered to { $k } of { $n }
ack-button = Acknowledge
ack-done = You acknowledged · { $time }
roll-title = Roll-call
roll-summary = { $ack } acknowledged · { $read } read · { $delivered } delivered · { $missing } not delivered
roll-acknowledged-at = Acknowledged · { $time }
roll-read = Read
roll-delivered = Delivered, not read
roll-not-delivered = Not delivered yet
roll-realert = Alert again
roll-realerted =
    { $count ->
        [one] Alerted { $count } member again
       *[other] Alerted { $count } members again
    }
mesh-title = Mesh health
mesh-state = Node
mesh-online = Online
mesh-offline = Offline
mesh-links = Links
mesh-conversations = Conversations
mesh-backlog = Waiting to apply
mesh-stored = Stored
mesh-traffic = Traffic
mesh-traffic-value = { $in } in, { $out } out
mesh-refused = Refused
mesh-connected = Connected peers
mesh-none-connected = No peer connected.
mesh-seen = Peers seen
mesh-none-seen = No peer seen yet.
mesh-unknown-peer = Unknown device
mesh-since = Linked { $time }
mesh-last-seen = Seen { $time }
mesh-outbound = Outgoing
mesh-inbound = Incoming
mesh-static = Fixed address
mesh-unreachable = Unreachable after { $count } tries
mesh-warnings = Warnings
transport-tcp = Network (TCP)
transport-quic = Network (QUIC)
transport-ble = Bluetooth
transport-other = Other
settings-title = Settings
settings-language = Language
settings-theme = Theme
theme-system = Same as device
theme-light = Light
theme-dark = Dark
settings-device = This device
settings-safety = Safety number
settings-signout = Sign out
error-generic = Something went wrong: { $error }
live-lost = Live updates paused, reconnecting…
