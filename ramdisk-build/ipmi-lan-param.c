/*
 * ipmi-lan-param CHANNEL PARAMETER [SET_SELECTOR]
 *
 * Asks the local BMC, through the kernel's IPMI device (/dev/ipmi0, ipmi_devintf), for one LAN configuration
 * parameter (Get LAN Configuration Parameters: netfn transport 0x0c, command 0x02) and prints its data, the
 * revision byte left out, as one line of lowercase hex on stdout. Exit status: 0 printed, 3 the BMC answered with
 * a completion code other than 0 (printed on stderr: no such channel, parameter not supported), 1 a system error
 * (no IPMI device, no answer within 5 s), 2 bad usage.
 *
 * Why this exists: the agent reads its BMC's addresses in-band, as IPA does with `ipmitool lan print` and
 * `lan6 print` (hardware-managers/generic/inventory.ts, inventory-extra.ts). ipmitool and the libfreeipmi it links
 * are 1.3 MB compressed in the ramdisk for these reads alone (issue 17: kernel + initramfs <= 48 MiB); this is a
 * few KB against the glibc the ramdisk already has. Built by the ramdisk build (ramdisk-build/rootfs.ts).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/ipmi.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define NETFN_TRANSPORT 0x0c
#define CMD_GET_LAN_CONFIG 0x02

static int number(const char *s, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 0);
  if (errno || *s == '\0' || *end != '\0' || v < 0 || v > max) return -1;
  *out = v;
  return 0;
}

static int open_device(void) {
  static const char *paths[] = { "/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0" };
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    int fd = open(paths[i], O_RDWR | O_CLOEXEC);
    if (fd >= 0) return fd;
  }
  return -1;
}

int main(int argc, char **argv) {
  long channel, param, set = 0;
  if (argc < 3 || argc > 4 || number(argv[1], 15, &channel) || number(argv[2], 255, &param) ||
      (argc == 4 && number(argv[3], 255, &set))) {
    fprintf(stderr, "usage: ipmi-lan-param CHANNEL(0-15) PARAMETER(0-255) [SET_SELECTOR(0-255)]\n");
    return 2;
  }
  int fd = open_device();
  if (fd < 0) {
    fprintf(stderr, "ipmi-lan-param: no IPMI device (/dev/ipmi0): %s\n", strerror(errno));
    return 1;
  }
  struct ipmi_system_interface_addr bmc = { .addr_type = IPMI_SYSTEM_INTERFACE_ADDR_TYPE, .channel = IPMI_BMC_CHANNEL, .lun = 0 };
  /* Byte 1: bit 7 clear = the parameter itself, not just its revision; bits 3:0 the channel. Block selector 0. */
  unsigned char request[4] = { (unsigned char)channel, (unsigned char)param, (unsigned char)set, 0 };
  struct ipmi_req req = { .addr = (unsigned char *)&bmc, .addr_len = sizeof bmc, .msgid = 1,
                          .msg = { .netfn = NETFN_TRANSPORT, .cmd = CMD_GET_LAN_CONFIG, .data_len = sizeof request, .data = request } };
  if (ioctl(fd, IPMICTL_SEND_COMMAND, &req) < 0) {
    fprintf(stderr, "ipmi-lan-param: send: %s\n", strerror(errno));
    return 1;
  }
  struct pollfd p = { .fd = fd, .events = POLLIN };
  int ready = poll(&p, 1, 5000);
  if (ready <= 0) {
    fprintf(stderr, "ipmi-lan-param: %s\n", ready == 0 ? "no answer from the BMC within 5 s" : strerror(errno));
    return 1;
  }
  unsigned char answer[IPMI_MAX_MSG_LENGTH];
  struct ipmi_addr from;
  struct ipmi_recv recv = { .addr = (unsigned char *)&from, .addr_len = sizeof from,
                            .msg = { .data = answer, .data_len = sizeof answer } };
  if (ioctl(fd, IPMICTL_RECEIVE_MSG_TRUNC, &recv) < 0 && errno != EMSGSIZE) {
    fprintf(stderr, "ipmi-lan-param: receive: %s\n", strerror(errno));
    return 1;
  }
  close(fd);
  if (recv.msg.data_len < 1) {
    fprintf(stderr, "ipmi-lan-param: empty answer\n");
    return 1;
  }
  if (answer[0] != 0) {
    fprintf(stderr, "ipmi-lan-param: completion code 0x%02x\n", answer[0]);
    return 3;
  }
  /* answer[0] completion code, answer[1] parameter revision, then the data. */
  for (int i = 2; i < recv.msg.data_len; i++) printf(i == 2 ? "%02x" : " %02x", answer[i]);
  printf("\n");
  return 0;
}
