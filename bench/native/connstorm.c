/*
 * connstorm: the connection-rate load generator in C (plain TCP, MQTT 3.1.1).
 *
 * Why: the Node generator spends ~110 µs of CPU per connection (a net.Socket and its streams), so
 * on one core it tops out near 8,000 conn/s, and a broker faster than that cannot be told apart
 * from it. This one spends what the kernel does (socket, connect, one write, one read): the broker
 * is the bottleneck again. bench/lib/native.mjs compiles it on first use with `cc` (Debian:
 * build-essential); without a C compiler the bench keeps the Node generator.
 *
 * Usage: connstorm HOST PORT COUNT WINDOW ID_PREFIX KEEPALIVE SPREAD FIRST [USERNAME PASSWORD]
 *   SPREAD 1: connection i binds to loopback source 127.0.(1+k/250).(1+k%250), k = (FIRST+i) % 1000
 *   (the same fleet spread as bench/lib/raw-mqtt.mjs spreadAddress), 0: the kernel picks.
 *   A "{i}" in USERNAME becomes the connection number: one user per device (bench/cold-fleet.mjs).
 * Opens COUNT connections with at most WINDOW handshakes (TCP connect to CONNACK) in flight and
 * holds each one accepted. When all have answered it prints one JSON line on stdout:
 *   {"connected":N,"failed":N,"errors":{"returnCode 5":N,…},"elapsedMs":F,"userUs":N,"systemUs":N}
 * (elapsed: first connect to last CONNACK; CPU: this process over the same span). Then, when stdin
 * ends or gives a line, it sends DISCONNECT on every held connection, closes them and exits.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { CONNECTING = 1, AWAIT_CONNACK = 2 };

struct conn {
  int fd;
  int state;
  int got; /* CONNACK bytes read so far */
  unsigned char head[4];
};

#define MAX_ERRORS 16
static struct {
  char key[48];
  long n;
} errors[MAX_ERRORS];
static int nerrors;

static void count_error(const char *key) {
  for (int i = 0; i < nerrors; i++)
    if (strcmp(errors[i].key, key) == 0) {
      errors[i].n++;
      return;
    }
  if (nerrors == MAX_ERRORS) key = "other", nerrors--;
  snprintf(errors[nerrors].key, sizeof errors[nerrors].key, "%s", key);
  errors[nerrors++].n = 1;
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static long cpu_us(int which) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  struct timeval t = which == 0 ? r.ru_utime : r.ru_stime;
  return t.tv_sec * 1000000L + t.tv_usec;
}

static size_t put_field(unsigned char *p, const char *s, size_t n) {
  p[0] = (unsigned char)(n >> 8);
  p[1] = (unsigned char)n;
  memcpy(p + 2, s, n);
  return 2 + n;
}

/* The CONNECT of connection i (clean session), as bench/lib/raw-mqtt.mjs connectPacket builds it. */
static size_t connect_packet(unsigned char *buf, const char *prefix, long i, int keepalive, const char *user, const char *pass) {
  char id[128];
  int idn = snprintf(id, sizeof id, "%s%ld", prefix, i);
  char named[1100];
  const char *mark = user ? strstr(user, "{i}") : NULL;
  if (mark) {
    snprintf(named, sizeof named, "%.*s%ld%s", (int)(mark - user), user, i, mark + 3);
    user = named;
  }
  size_t len = 10 + 2 + (size_t)idn;
  unsigned char flags = 0x02;
  if (user) flags |= 0x80, len += 2 + strlen(user);
  if (pass) flags |= 0x40, len += 2 + strlen(pass);
  size_t o = 0;
  buf[o++] = 0x10;
  size_t x = len;
  do {
    unsigned char b = x % 128;
    x /= 128;
    if (x > 0) b |= 128;
    buf[o++] = b;
  } while (x > 0);
  static const unsigned char proto[] = {0, 4, 'M', 'Q', 'T', 'T', 4};
  memcpy(buf + o, proto, sizeof proto);
  o += sizeof proto;
  buf[o++] = flags;
  buf[o++] = (unsigned char)(keepalive >> 8);
  buf[o++] = (unsigned char)keepalive;
  o += put_field(buf + o, id, (size_t)idn);
  if (user) o += put_field(buf + o, user, strlen(user));
  if (pass) o += put_field(buf + o, pass, strlen(pass));
  return o;
}

int main(int argc, char **argv) {
  if (argc != 9 && argc != 11) {
    fprintf(stderr, "usage: connstorm HOST PORT COUNT WINDOW ID_PREFIX KEEPALIVE SPREAD FIRST [USERNAME PASSWORD]\n");
    return 2;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]);
  long count = atol(argv[3]);
  long window = atol(argv[4]);
  const char *prefix = argv[5];
  int keepalive = atoi(argv[6]);
  int spread = atoi(argv[7]);
  long first = atol(argv[8]);
  /* an empty USERNAME or PASSWORD: that field is left out of the CONNECT */
  const char *user = argc == 11 && argv[9][0] ? argv[9] : NULL;
  const char *pass = argc == 11 && argv[10][0] ? argv[10] : NULL;
  if (count < 0 || window < 1 || strlen(prefix) > 64 || (user && strlen(user) > 1024) || (pass && strlen(pass) > 1024)) {
    fprintf(stderr, "connstorm: bad arguments\n");
    return 2;
  }

  /* every held connection is a descriptor: raise the soft limit to the hard one */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
    fprintf(stderr, "connstorm: HOST must be an IPv4 address\n");
    return 2;
  }
  struct conn *conns = calloc((size_t)(count > 0 ? count : 1), sizeof *conns);
  int ep = epoll_create1(0);
  if (!conns || ep < 0) {
    perror("connstorm");
    return 1;
  }
  unsigned char packet[2300];
  long started = 0, settled = 0, connected = 0, failed = 0;
  double t0 = now_ms(), last = t0;
  long u0 = cpu_us(0), s0 = cpu_us(1);

  while (settled < count) {
    while (started - settled < window && started < count) {
      long i = started++;
      struct conn *c = &conns[i];
      c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (c->fd < 0) {
        count_error(strerror(errno));
        failed++, settled++;
        continue;
      }
      if (spread) {
        long k = (first + i) % 1000;
        struct sockaddr_in src = {.sin_family = AF_INET};
        char a[32];
        snprintf(a, sizeof a, "127.0.%ld.%ld", 1 + k / 250, 1 + k % 250);
        inet_pton(AF_INET, a, &src.sin_addr);
        int one = 1;
        /* the port is chosen at connect, per destination: 1,000 sources × 28,000 ports each */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0) {
          count_error(strerror(errno));
          close(c->fd);
          c->fd = -1;
          failed++, settled++;
          continue;
        }
      }
      if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS) {
        count_error(strerror(errno));
        close(c->fd);
        c->fd = -1;
        failed++, settled++;
        continue;
      }
      c->state = CONNECTING;
      /* edge-triggered, both directions, registered once: no epoll_ctl between connect and CONNACK
         (the CONNACK may come in the same wakeup as writability, so reading falls through below) */
      struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLET, .data.u64 = (uint64_t)i};
      epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }
    if (settled >= count) break;
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, 30000);
    if (n == 0) {
      /* nothing answered for 30 s: the rest count as timed out */
      for (long i = 0; i < started; i++)
        if (conns[i].state != 0) {
          count_error("timeout");
          close(conns[i].fd);
          conns[i].fd = -1;
          conns[i].state = 0;
          failed++, settled++;
        }
      continue;
    }
    for (int e = 0; e < n; e++) {
      long i = (long)evs[e].data.u64;
      struct conn *c = &conns[i];
      const char *error = NULL;
      if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) error = strerror(err);
        else {
          size_t plen = connect_packet(packet, prefix, i, keepalive, user, pass);
          if (write(c->fd, packet, plen) != (ssize_t)plen) error = "short write";
          else c->state = AWAIT_CONNACK;
        }
      }
      if (!error && c->state == AWAIT_CONNACK && (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        ssize_t r = read(c->fd, c->head + c->got, (size_t)(4 - c->got));
        if (r == 0) error = "closed";
        else if (r < 0) error = errno == EAGAIN ? NULL : strerror(errno);
        else if ((c->got += (int)r) == 4) {
          if (c->head[0] != 0x20) error = "unexpected packet";
          else if (c->head[3] != 0) {
            char key[32];
            snprintf(key, sizeof key, "returnCode %d", c->head[3]);
            count_error(key);
            close(c->fd);
            c->fd = -1;
            c->state = 0;
            failed++, settled++;
            continue;
          } else {
            /* accepted: held (edge-triggered, so a quiet connection raises no more events) */
            c->state = 0;
            connected++, settled++;
            last = now_ms();
            continue;
          }
        } else continue;
      }
      if (error) {
        count_error(error);
        close(c->fd);
        c->fd = -1;
        c->state = 0;
        failed++, settled++;
      }
    }
  }
  long u1 = cpu_us(0), s1 = cpu_us(1);
  printf("{\"connected\":%ld,\"failed\":%ld,\"errors\":{", connected, failed);
  for (int i = 0; i < nerrors; i++) printf("%s\"%s\":%ld", i ? "," : "", errors[i].key, errors[i].n);
  printf("},\"elapsedMs\":%.3f,\"userUs\":%ld,\"systemUs\":%ld}\n", last - t0, u1 - u0, s1 - s0);
  fflush(stdout);

  /* hold until told (a line or the end of stdin), then leave as a client would */
  char line[16];
  if (fgets(line, sizeof line, stdin) == NULL) { /* stdin ended */ }
  static const unsigned char disconnect[] = {0xe0, 0x00};
  for (long i = 0; i < count; i++)
    if (conns[i].fd > 0) {
      if (write(conns[i].fd, disconnect, sizeof disconnect) < 0) { /* already gone */ }
      close(conns[i].fd);
    }
  return 0;
}
