#!/bin/busybox sh
# /init of the Bluetooth test guest (tests/ble-vm/run.sh builds the initramfs around it).
# Two virtual controllers (btvirt: hci0 <-> hci1), bluetoothd on a private D-Bus, loopback
# only. Three nodes: A (Bluetooth only, hci0), B (Bluetooth on hci1 + TCP on 127.0.0.1), C
# (TCP only, dials B). Once over L2CAP, once GATT only. Every check prints one line
# "BLE-VM CHECK <mode> <name> PASS|FAIL ..." and the end "BLE-VM RESULT PASS|FAIL".
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin HOME=/tmp
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
ip link set lo up
for m in crc16 ecc ecdh_generic rfkill bluetooth hci_vhci ecb cmac af_alg algif_hash algif_skcipher; do
  insmod /mods/$m.ko 2>/dev/null || echo "insmod $m failed"
done
up() { cut -d' ' -f1 /proc/uptime; }
T0=$(up)
btvirt -l2 > /tmp/btvirt.log 2>&1 &
i=0; while [ ! -e /sys/class/bluetooth/hci1 ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done
sleep 1
# Leftover advertising makes bluetoothd fail with "Busy": controllers off before it starts.
for i in 0 1; do btmgmt --index $i power off >/dev/null 2>&1; done
dbus-daemon --config-file=/etc/dbus-sys.conf --nofork --nopidfile > /tmp/dbus.log 2>&1 &
sleep 1
/usr/libexec/bluetooth/bluetoothd -n > /tmp/bluetoothd.log 2>&1 &
sleep 2
btmgmt --index 0 advinfo 2>&1 | head -5
echo "BLE-VM guest ready after $(up)s (controllers: $(ls /sys/class/bluetooth | tr '\n' ' '))"

FAILED=0; CHECKS=0
check() { # mode name ok(0/1) detail
  CHECKS=$((CHECKS+1))
  if [ "$3" = 0 ]; then echo "BLE-VM CHECK $1 $2 PASS $4"; else echo "BLE-VM CHECK $1 $2 FAIL $4"; FAILED=1; dump; fi
}
dump() {
  for n in a b c; do
    echo "--- $MODE node $n: peers $(V $n peers --json 2>&1 | tr -d ' \n' | cut -c1-400)"
    grep -v "^ " /tmp/$MODE/$n.log | grep -v "handshake packet" | tail -40 | cut -c1-300
  done
}
V() { h=$1; shift; timeout 30 vaarta --home /tmp/$MODE/$h "$@"; }
# Started with `&`: exec, so that $! is the node itself (a subshell killed in its place
# left the node running: the "bulk while A is down" never had A down, and the last mode's
# B kept hci1 and port 7447 in the next mode).
UP() { h=$1; shift; exec vaarta --home /tmp/$MODE/$h up "$@"; }
say() { echo "BLE-VM [$(up)s] $*"; }
devid() { V $1 id --json | tr -d ' \n' | sed 's/.*"device_id":"\([^"]*\)".*/\1/'; }
# wait_until SECONDS command...: polls every 0.5 s
wait_until() { end=$(echo "$(up) $1" | awk '{print int($1+$2)}'); shift
  while [ "$(up | cut -d. -f1)" -lt "$end" ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done; "$@" >/dev/null 2>&1; }
# ready_over NODE DEVICE TRANSPORT: NODE has a ready link to DEVICE over TRANSPORT.
# (DEVICE "": any; a device shows only once the two share a conversation.)
ready_over() { d="\"device\":\"$2\""; [ -z "$2" ] && d=""
  V $1 peers --json | tr -d ' \n' | grep -q "$d[^}]*\"ready\":true[^}]*\"transport\":\"$3\""; }
has_msg() { V $1 log "$CONV" --json --limit 1000 | grep -q "$2"; }
bodies() { V $1 log "$CONV" --json --limit 1000 | tr -d '\n' | sed 's/}{/}\n{/g' | sed -n 's/.*"body":"\([^"]*\)".*/\1/p' | cut -c1-40 | md5sum | cut -d' ' -f1; }

agree() { ha=$(bodies a); hb=$(bodies b); hc=$(bodies c); [ -n "$ha" ] && [ "$ha" = "$hb" ] && [ "$hb" = "$hc" ]; }

run_mode() {
  MODE=$1; EXTRA=$2; WANT=$3
  echo "=== BLE-VM mode $MODE ($WANT) at $(up)s"
  mkdir -p /tmp/$MODE
  for n in a b c; do V $n init --name "node-$n" >/dev/null || echo "init $n failed"; done
  A=$(devid a); B=$(devid b); C=$(devid c)
  say "devices A=$A B=$B C=$C"
  V b invites accept "$A" >/dev/null; V c invites accept "$A" >/dev/null
  V b invites accept "$C" >/dev/null; V c invites accept "$B" >/dev/null
  export RUST_LOG=info,vaarta_ble=debug
  UP b --ble --ble-adapter hci1 $EXTRA --listen /ip4/127.0.0.1/tcp/7447 --no-mdns > /tmp/$MODE/b.log 2>&1 &
  PB=$!
  UP a --ble --ble-adapter hci0 $EXTRA --listen /ip4/127.0.0.1/tcp/0 --no-mdns > /tmp/$MODE/a.log 2>&1 &
  PA=$!
  UP c --listen /ip4/127.0.0.1/tcp/0 --no-mdns --peer /ip4/127.0.0.1/tcp/7447 > /tmp/$MODE/c.log 2>&1 &
  PC=$!
  say "nodes started"
  t=$(up)
  wait_until 240 ready_over a "" "$WANT"; r=$?
  check $MODE link-a-b-$WANT $r "(A linked to B over $WANT after $(echo "$(up) $t" | awk '{printf "%.1f", $1-$2}')s)"
  wait_until 60 ready_over c "" tcp; check $MODE link-c-b-tcp $? ""
  if V a peers --json | tr -d ' \n' | grep -q '"transport":"tcp"'; then check $MODE a-has-no-tcp-link 1 ""; else check $MODE a-has-no-tcp-link 0 ""; fi
  CONV=$(V a conv create "Flood $MODE" --member "$B" --member "$C" | tr -d ' \n')
  t=$(up)
  V a send "$CONV" "hello C from A over Bluetooth ($MODE)" >/dev/null
  wait_until 120 has_msg c "hello C from A"; r=$?
  check $MODE a-to-c $r "(A -> B -> C in $(echo "$(up) $t" | awk '{printf "%.1f", $1-$2}')s)"
  t=$(up)
  V c send "$CONV" "reply to A from C ($MODE)" >/dev/null
  wait_until 120 has_msg a "reply to A from C"; r=$?
  check $MODE c-to-a $r "(C -> B -> A in $(echo "$(up) $t" | awk '{printf "%.1f", $1-$2}')s)"
  # This mode's B, not a node left from the last mode: the devices show now.
  wait_until 30 ready_over a "$B" "$WANT"; check $MODE a-linked-to-this-b-over-$WANT $? ""
  wait_until 30 ready_over c "$B" tcp; check $MODE c-linked-to-this-b-over-tcp $? ""
  if [ "$MODE" = l2cap ]; then
    # FLASH during a 1 MB bulk transfer. A writes 16 messages of 64 KB while its node is
    # down; once its Bluetooth link to B is back the catch-up (1 MB) is under way and A sends
    # one FLASH message. B's `log --follow` prints messages as they arrive (a batch that
    # arrived together in log order, FLASH last): FLASH first means its line comes before
    # the 16th bulk line.
    head -c 49000 /dev/urandom | base64 | tr -d '\n' | cut -c1-65000 > /tmp/bulk.txt
    prefix=$(cut -c1-32 /tmp/bulk.txt)
    kill $PA; wait $PA 2>/dev/null
    i=0; while [ $i -lt 16 ]; do V a send "$CONV" --file /tmp/bulk.txt >/dev/null; i=$((i+1)); done
    vaarta --home /tmp/$MODE/b log "$CONV" --follow --json --limit 1 > /tmp/$MODE/follow.txt 2>&1 &
    PF=$!
    UP a --ble --ble-adapter hci0 $EXTRA --listen /ip4/127.0.0.1/tcp/0 --no-mdns >> /tmp/$MODE/a.log 2>&1 &
    PA=$!
    wait_until 150 ready_over a "" "$WANT"
    t=$(up)
    V a send "$CONV" "FLASH levee breach" --precedence flash >/dev/null
    ts=$(up)
    flash=""; bulk=""
    end=$(echo "$(up)" | awk '{print int($1+300)}')
    while [ "$(up | cut -d. -f1)" -lt "$end" ] && { [ -z "$flash" ] || [ -z "$bulk" ]; }; do
      [ -z "$flash" ] && grep -q "FLASH levee breach" /tmp/$MODE/follow.txt && flash=$(up)
      [ -z "$bulk" ] && [ "$(grep -c "$prefix" /tmp/$MODE/follow.txt)" -ge 16 ] && bulk=$(up)
      sleep 0.2
    done
    kill $PF 2>/dev/null
    fl=$(grep -n "FLASH levee breach" /tmp/$MODE/follow.txt | head -1 | cut -d: -f1)
    bl=$(grep -n "$prefix" /tmp/$MODE/follow.txt | sed -n 16p | cut -d: -f1)
    rel() { [ -n "$1" ] && echo "$1 $t" | awk '{printf "%.1fs", $1-$2}' || echo never; }
    echo "BLE-VM MEASURE $MODE flash-during-1MB-bulk link_up_to_flash_sent=$(rel $ts) flash_at_b=$(rel $flash) bulk_done_at_b=$(rel $bulk) follow_lines flash=${fl:-none} 16th_bulk=${bl:-none}"
    # Measured, not asserted yet: with A really down (it was not, before the nodes were
    # exec'd) the catch-up arrives as one burst and the FLASH came with its last message
    # (line 18 after the 16th bulk at 17, 2026-12-03): what holds it is upstream of the
    # driver's lanes (issue 14).
  fi
  wait_until 180 agree; check $MODE logs-agree $? "($ha $hb $hc)"
  for n in a b; do
    grep -E "authenticated|link down|connect failed|timed out|refused" /tmp/$MODE/$n.log | grep vaarta_ble \
      | cut -c12-300 | sed "s/^/BLE-VM DRIVER $MODE $n: /" | tail -15
  done
  # Every node gone before the next mode (a left-over B would still serve hci1).
  kill $PA $PB $PC 2>/dev/null
  ( sleep 20; kill -9 $PA $PB $PC 2>/dev/null ) &
  K=$!
  wait $PA $PB $PC 2>/dev/null
  kill $K 2>/dev/null
  sleep 1
}

MODES=$(sed -n 's/.*vaarta_modes=\([a-z0-9,]*\).*/\1/p' /proc/cmdline)
case ",${MODES:-l2cap,gatt}," in *,l2cap,*) run_mode l2cap "" ble-l2cap ;; esac
case ",${MODES:-l2cap,gatt}," in *,gatt,*) run_mode gatt --ble-no-l2cap ble-gatt ;; esac
if [ $FAILED != 0 ]; then echo "--- bluetoothd log"; tail -20 /tmp/bluetoothd.log; fi
[ $CHECKS -gt 0 ] || { echo "BLE-VM no check ran"; FAILED=1; }
if [ $FAILED = 0 ]; then echo "BLE-VM RESULT PASS (guest time $(up)s)"; else echo "BLE-VM RESULT FAIL (guest time $(up)s)"; fi
sync
poweroff -f
