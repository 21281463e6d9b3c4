/* sysext-test's window on systemd's own version order: loads the guest's
 * libsystemd-shared (argv[1]) and answers, for each "A<TAB>B" line on stdin, one line with
 * '<', '=' or '>' from strverscmp_improved(A, B), the function behind
 * `systemd-analyze compare-versions`, sysext's stacking order and sysupdate's choices.
 * A process per pair would cost a TCG guest tens of milliseconds; this costs one. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

typedef int (*cmp_fn)(const char *, const char *);

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s /path/to/libsystemd-shared-NNN.so < pairs\n", argv[0]);
                return 2;
        }
        void *lib = dlopen(argv[1], RTLD_NOW);
        if (!lib) {
                fprintf(stderr, "dlopen: %s\n", dlerror());
                return 2;
        }
        cmp_fn cmp = (cmp_fn) dlsym(lib, "strverscmp_improved");
        if (!cmp) {
                fprintf(stderr, "dlsym strverscmp_improved: %s\n", dlerror());
                return 2;
        }
        static char line[65536];
        while (fgets(line, sizeof line, stdin)) {
                size_t n = strlen(line);
                if (n > 0 && line[n - 1] == '\n')
                        line[--n] = 0;
                char *tab = strchr(line, '\t');
                if (!tab) {
                        puts("?");
                        continue;
                }
                *tab = 0;
                int r = cmp(line, tab + 1);
                puts(r < 0 ? "<" : r > 0 ? ">" : "=");
        }
        return 0;
}
