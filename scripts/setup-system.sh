#!/usr/bin/env bash
# Installs the Debian packages baremetal-ts needs: QEMU + iPXE for nodes, the tools the agent drives
# (and bakes into the ramdisk), BMC simulators/clients, nginx for image benchmarks, and the real
# Ironic + baremetal CLI for compatibility tests. Idempotent: skips apt when everything is present.
set -euo pipefail
PKGS=(
  # nodes: VMs, network boot, the kernel the ramdisk boots
  qemu-system-x86 qemu-utils ipxe-qemu seabios linux-image-amd64 busybox-static cpio
  # tools the agent drives (also baked into the ramdisk)
  util-linux fdisk gdisk parted mdadm dosfstools e2fsprogs xfsprogs zstd xz-utils gzip efibootmgr
  grub-pc-bin grub-efi-amd64-bin grub2-common genisoimage iproute2 kmod nvme-cli hdparm
  # ramdisk build: strip (node is stripped before the SEA blob is injected)
  binutils
  # test fixtures: bootable disk images, BMCs, image server, openssl for TLS fixtures
  syslinux syslinux-common extlinux mtools openipmi ipmitool redfishtool nginx-light curl openssl
  # LLDP: the ramdisk build compiles the lldp collector's listener (ramdisk-build/lldp-listen.c); lldpd is the
  # switch port the inspection VM test's second NIC hears
  gcc libc6-dev lldpd
  # compatibility peers: the real baremetal CLI and Debian's Ironic
  python3-ironicclient python3-openstackclient ironic-api ironic-conductor
  # the database several conductors share (tests run their own cluster in a temp dir)
  postgresql
  # provisioning network (dnsmasq DHCP/TFTP in a namespace), UEFI nodes, PXELINUX/GRUB boot files
  dnsmasq-base ovmf pxelinux ipxe
  # iscsi deploy: the agent's user-space target (tgtd/tgtadm), the conductor's libiscsi initiator for qemu-img
  tgt qemu-block-extra
  # inventory tools IPA users expect in the ramdisk
  pciutils usbutils ethtool lshw smartmontools
  # inspection peer, cloud identity, openstacksdk client
  ironic-inspector keystone python3-openstacksdk
  # serial console bridge, web console in a real browser
  socat chromium
  # ssh + libvirt power, iSCSI deploy
  libvirt-daemon-system libvirt-clients openssh-server tgt libiscsi-bin qemu-block-extra
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then echo "setup-system: all ${#PKGS[@]} packages present"; exit 0; fi
echo "setup-system: installing ${missing[*]}"
# Keep apt from starting daemons (nginx, ironic, ...): tests start what they need themselves.
if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
