/* LD_PRELOAD shim for tests: logs every fsync/fdatasync with the file's path and, while the file
 * named by $HOLDSYNC_HOLD exists, holds the call until it is removed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void note(const char *call, int fd, const char *what) {
    const char *log = getenv("HOLDSYNC_LOG");
    if (log == NULL) return;
    char link[64], path[PATH_MAX] = "?", line[PATH_MAX + 128];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n >= 0) path[n] = 0;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int len = snprintf(line, sizeof line, "%ld.%09ld %s %s %s\n", (long)now.tv_sec, now.tv_nsec, call, what, path);
    int out = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (out >= 0) { (void)!write(out, line, (size_t)len); close(out); }
}

static void hold(const char *call, int fd) {
    const char *flag = getenv("HOLDSYNC_HOLD");
    if (flag == NULL || access(flag, F_OK) != 0) return;
    note(call, fd, "held");
    for (int i = 0; i < 60000 && access(flag, F_OK) == 0; i++) usleep(1000); /* at most 60 s */
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    hold("fsync", fd);
    int rc = real(fd);
    note("fsync", fd, "done");
    return rc;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    hold("fdatasync", fd);
    int rc = real(fd);
    note("fdatasync", fd, "done");
    return rc;
}
