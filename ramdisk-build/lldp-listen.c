/*
 * lldp-listen IFACE SECONDS
 *
 * Waits up to SECONDS for one LLDP frame (ethertype 0x88cc) arriving on IFACE and prints it, Ethernet header
 * included, as one line of lowercase hex on stdout. Exit status: 0 a frame was printed, 3 none came in time,
 * 1 a system error (no such interface, no CAP_NET_RAW, ...), 2 bad usage.
 *
 * Why this exists: the agent's lldp inspection collector (hardware-managers/generic/inventory-extra.ts) needs raw
 * frames, which Node cannot receive. tcpdump did the listening at 1.3 MB plus libpcap; this is a few KB against
 * the glibc the ramdisk already has (issue 17: kernel + initramfs <= 48 MiB). It is built by the ramdisk build
 * (ramdisk-build/rootfs.ts) and does what IPA's raw-socket listener does:
 *  - an AF_PACKET socket bound to the interface and to the LLDP ethertype: the kernel does the filtering, no BPF;
 *  - the interface in promiscuous mode while the socket lives (the kernel undoes it on exit): LLDP goes to the
 *    01:80:c2:00:00:0e group, which a NIC's multicast filter (virtio-net's included) drops otherwise;
 *  - frames this host sends itself are skipped.
 */
#include <errno.h>
#include <limits.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define LLDP_ETHERTYPE 0x88cc

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(const char *what, const char *iface) {
  fprintf(stderr, "lldp-listen: %s %s: %s\n", what, iface, strerror(errno));
  return 1;
}

int main(int argc, char **argv) {
  char *end = NULL;
  double secs = argc == 3 ? strtod(argv[2], &end) : 0;
  if (argc != 3 || *end != '\0' || !(secs > 0 && secs < 86400)) {
    fprintf(stderr, "usage: lldp-listen IFACE SECONDS\n");
    return 2;
  }
  const char *iface = argv[1];
  unsigned int ifindex = if_nametoindex(iface);
  if (ifindex == 0) return fail("no interface", iface);

  /* Protocol 0: the socket receives nothing until bind() names interface and ethertype, so no frame of another
     interface slips in between the two calls. */
  int fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) return fail("socket for", iface);
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(LLDP_ETHERTYPE);
  sll.sll_ifindex = (int)ifindex;
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) return fail("bind to", iface);
  struct packet_mreq mr;
  memset(&mr, 0, sizeof mr);
  mr.mr_ifindex = (int)ifindex;
  mr.mr_type = PACKET_MR_PROMISC;
  if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) return fail("promiscuous mode on", iface);

  static unsigned char frame[9216]; /* a jumbo frame; LLDPDUs are far smaller */
  const long long deadline = now_ms() + (long long)(secs * 1000);
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) {
      fprintf(stderr, "lldp-listen: no LLDP frame on %s within %s s\n", iface, argv[2]);
      return 3;
    }
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
    if (r < 0 && errno != EINTR) return fail("poll on", iface);
    if (r <= 0) continue;
    struct sockaddr_ll from;
    socklen_t fromlen = sizeof from;
    ssize_t n = recvfrom(fd, frame, sizeof frame, 0, (struct sockaddr *)&from, &fromlen);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return fail("recvfrom on", iface);
    }
    if (from.sll_pkttype == PACKET_OUTGOING || n < 14) continue;
    for (ssize_t i = 0; i < n; i++) printf("%02x", frame[i]);
    putchar('\n');
    return fflush(stdout) == 0 ? 0 : 1;
  }
}
