/* The C limit: one hiredis publisher and SUBS hiredis subscribers in one poll() loop.
 *
 *   hiredis_fanout HOST PORT SUBS EVENTS PIPELINE PAYLOAD_BYTES
 *
 * The publisher keeps up to PIPELINE PUBLISHes in flight on channel "cbench"; every
 * subscriber counts the messages it gets. Done when every subscriber got EVENTS messages
 * (lossless), or when nothing moved for 10 s (then "complete": false). Prints one JSON line:
 * deliveries (messages received by all subscribers), seconds, deliveries_per_s, cpu_s (this
 * process, user + sys). Built by benchmarks/climit.py with the system compiler and libhiredis.
 */
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

static void die(const char *what, redisContext *c) {
    fprintf(stderr, "hiredis_fanout: %s: %s\n", what, c && c->err ? c->errstr : "failed");
    exit(2);
}

static void flush(redisContext *c) {
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK) die("write", c);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: hiredis_fanout HOST PORT SUBS EVENTS PIPELINE PAYLOAD_BYTES\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), subs = atoi(argv[3]), pipeline = atoi(argv[5]), size = atoi(argv[6]);
    long events = atol(argv[4]);
    if (subs < 1 || subs > 1000 || events < 1 || pipeline < 1 || size < 1) {
        fprintf(stderr, "hiredis_fanout: bad arguments\n");
        return 2;
    }
    struct timeval tv = {5, 0};
    redisContext **sc = calloc(subs, sizeof *sc);
    long *got = calloc(subs, sizeof *got);
    struct pollfd *fds = calloc(subs + 1, sizeof *fds);
    char *payload = malloc(size);
    memset(payload, 'x', size);
    for (int i = 0; i < subs; i++) {
        sc[i] = redisConnectWithTimeout(host, port, tv);
        if (!sc[i] || sc[i]->err) die("connect", sc[i]);
        redisReply *r = redisCommand(sc[i], "SUBSCRIBE cbench");
        if (!r) die("subscribe", sc[i]);
        freeReplyObject(r);
    }
    redisContext *pub = redisConnectWithTimeout(host, port, tv);
    if (!pub || pub->err) die("connect", pub);
    long sent = 0, acked = 0, total = 0, want = events * (long)subs;
    double t0 = now(), c0 = cpu(), last_progress = t0;
    while (total < want) {
        int queued = 0;
        while (sent < events && sent - acked < pipeline) {
            redisAppendCommand(pub, "PUBLISH cbench %b", payload, (size_t)size);
            sent++;
            queued = 1;
        }
        if (queued) flush(pub);
        fds[0].fd = pub->fd;
        fds[0].events = POLLIN;
        for (int i = 0; i < subs; i++) {
            fds[i + 1].fd = sc[i]->fd;
            fds[i + 1].events = POLLIN;
        }
        if (poll(fds, subs + 1, 1000) < 0) die("poll", NULL);
        void *reply;
        if (fds[0].revents) {
            if (redisBufferRead(pub) != REDIS_OK) die("read", pub);
            while (redisGetReplyFromReader(pub, &reply) == REDIS_OK && reply) {
                freeReplyObject(reply);
                acked++;
            }
        }
        for (int i = 0; i < subs; i++) {
            if (!fds[i + 1].revents) continue;
            if (redisBufferRead(sc[i]) != REDIS_OK) die("read", sc[i]);
            while (redisGetReplyFromReader(sc[i], &reply) == REDIS_OK && reply) {
                freeReplyObject(reply);
                got[i]++;
                total++;
                last_progress = now();
            }
        }
        if (now() - last_progress > 10.0) break;
    }
    double secs = now() - t0, c = cpu() - c0;
    printf("{\"subscribers\": %d, \"events\": %ld, \"pipeline\": %d, \"payload_bytes\": %d, \"deliveries\": %ld, "
           "\"complete\": %s, \"seconds\": %.6f, \"deliveries_per_s\": %.1f, \"cpu_s\": %.6f}\n",
           subs, events, pipeline, size, total, total >= want ? "true" : "false", secs, total / secs, c);
    return 0;
}
