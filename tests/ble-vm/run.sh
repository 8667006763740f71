#!/bin/bash
# The Bluetooth LE test on a real Linux stack: a QEMU guest (software emulation, no network
# device) with two virtual controllers (btvirt), bluetoothd and three vaarta nodes; see
# init.sh for the scenario. Prints the guest's console and exits 0 only on
# "BLE-VM RESULT PASS".
#
#   VAARTA_BIN=target/debug/vaarta tests/ble-vm/run.sh        (a build with --features ble)
#
# Host packages: qemu-system-x86 busybox-static bluez bluez-test-tools kmod (apt), and the
# Debian 6.1 kernel package (fetched here with apt-get download, cached in $WORK).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
VAARTA_BIN=${VAARTA_BIN:?path of a vaarta binary built with --features ble}
WORK=${WORK:-$here/../../target/ble-vm}
TIMEOUT=${BLE_VM_TIMEOUT:-900}
mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
cd "$WORK"

# The newest Debian 6.1 kernel the archive has (the guest's Bluetooth modules come with it).
if [ -z "${KV:-}" ]; then
  # (No debs/ yet on a fresh clone: `ls` fails, which must not end the script under pipefail.)
  KV=$( (ls debs 2>/dev/null || true) | sed -n 's/^linux-image-\(6\.1\.0-[0-9]*-amd64\)\.deb$/\1/p' | sort -V | tail -1)
fi
if [ -z "${KV:-}" ]; then
  pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{print $1}' | sort -V | tail -1)
  [ -n "$pkg" ] || { echo "no linux-image-6.1.0-*-amd64 package in apt's lists (apt-get update?)"; exit 2; }
  KV=${pkg#linux-image-}
fi
if [ ! -f "debs/linux-image-$KV.deb" ]; then
  mkdir -p debs
  (cd debs && apt-get download "linux-image-$KV" >/dev/null && mv linux-image-"${KV}"_*.deb "linux-image-$KV.deb")
fi
if [ ! -d "kroot-$KV/boot" ]; then
  rm -rf "kroot-$KV"; dpkg -x "debs/linux-image-$KV.deb" "kroot-$KV"
fi
K=kroot-$KV/lib/modules/$KV/kernel

rm -rf initrd
mkdir -p initrd/{bin,mods,proc,sys,dev,tmp,etc,run/dbus,var/lib/bluetooth,lib/x86_64-linux-gnu,lib64,usr/bin,usr/libexec/bluetooth}
cp /bin/busybox initrd/bin/
# btvirt needs AF_ALG (ecb/cmac via algif_*), else "Failed to open Virtual HCI device".
for m in lib/crc16 crypto/ecc crypto/ecdh_generic crypto/ecb crypto/cmac crypto/af_alg \
         crypto/algif_hash crypto/algif_skcipher net/rfkill/rfkill net/bluetooth/bluetooth \
         drivers/bluetooth/hci_vhci; do
  f=$( (ls "$K/$m.ko"* 2>/dev/null || true) | head -1)
  [ -n "$f" ] || { echo "module $m missing in $KV"; exit 2; }
  case $f in
    *.xz) xz -dc "$f" > "initrd/mods/$(basename "$m").ko" ;;
    *.zst) zstd -dqc "$f" > "initrd/mods/$(basename "$m").ko" ;;
    *) cp "$f" "initrd/mods/" ;;
  esac
done
BINS="/usr/bin/btvirt /usr/bin/btmgmt /usr/bin/dbus-daemon /usr/libexec/bluetooth/bluetoothd"
for b in $BINS; do case $b in */bluetoothd) cp "$b" initrd/usr/libexec/bluetooth/ ;; *) cp "$b" initrd/usr/bin/ ;; esac; done
cp "$VAARTA_BIN" initrd/usr/bin/vaarta
for l in $(ldd $BINS "$VAARTA_BIN" | awk '/=>/{print $3}' | sort -u); do cp -L "$l" initrd/lib/x86_64-linux-gnu/; done
cp -L /lib64/ld-linux-x86-64.so.2 initrd/lib64/
printf 'root:x:0:0:root:/:/bin/sh\nmessagebus:x:100:101::/:/bin/false\n' > initrd/etc/passwd
printf 'root:x:0:\nmessagebus:x:101:\n' > initrd/etc/group
cat > initrd/etc/dbus-sys.conf <<'X'
<busconfig><type>system</type><listen>unix:path=/run/dbus/system_bus_socket</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy></busconfig>
X
cp "$here/init.sh" initrd/init; chmod +x initrd/init
(cd initrd && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > ../initrd.cpio.gz)

start=$(date +%s)
# -nic none: no guest network at all. -accel tcg: KVM hangs on these machines. -smp 2:
# three debug-build nodes, bluetoothd and btvirt saturate one emulated CPU (multi-threaded
# TCG runs each on a host core).
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m 1536 -smp 2 -nographic -no-reboot -nic none \
  -kernel "kroot-$KV/boot/vmlinuz-$KV" -initrd initrd.cpio.gz \
  -append "console=ttyS0 rdinit=/init panic=-1 quiet vaarta_modes=${BLE_VM_MODES:-l2cap,gatt}" | tee console.log
set -e
echo "BLE-VM host: boot + test took $(( $(date +%s) - start ))s (kernel $KV)"
grep -q '^BLE-VM RESULT PASS' console.log
