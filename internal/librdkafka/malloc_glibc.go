//go:build !musl

package librdkafka

/*
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// glibc gives each thread that allocates concurrently an arena of its own, up to 8 per core, and librdkafka runs a
// thread per broker connection plus its main and timer threads. Measured on 2 cores draining 2,000,000 records of
// 100 B with default settings, librdkafka's memory peaked at 77 MB in five arenas and at 44 MB in one, at the same
// throughput (glibc's per-thread caches take most small allocations without the arena's lock). An operator's
// MALLOC_ARENA_MAX wins.
//
// A constructor, not a Go init function: glibc fixes the arena limit the first time two threads contend, and the Go
// runtime starts its threads (which malloc) before any package's init runs, so a mallopt from init came too late and
// the limit stayed at glibc's default. Constructors run before the Go runtime starts. (musl, the static build's
// libc, has no arenas.)
__attribute__((constructor)) static void eos_one_malloc_arena(void) {
	if (getenv("MALLOC_ARENA_MAX") == NULL)
		mallopt(M_ARENA_MAX, 1);
}

// eos_malloc_arenas counts the arenas in malloc_info's report, -1 when it cannot be read.
static int eos_malloc_arenas(void) {
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f == NULL)
		return -1;
	int rc = malloc_info(0, f);
	fclose(f);
	int n = 0;
	for (char *p = buf; rc == 0 && (p = strstr(p, "<heap nr=")) != NULL; p++)
		n++;
	free(buf);
	return rc == 0 ? n : -1;
}

// eos_malloc_churn allocates and frees n blocks, as a thread of librdkafka's would.
static void eos_malloc_churn(int n) {
	for (int i = 0; i < n; i++) {
		volatile char *p = malloc(512);
		if (p != NULL)
			p[0] = 1;
		free((void *)p);
	}
}
*/
import "C"

// mallocArenas is how many malloc arenas the process has; mallocChurn allocates and frees n blocks in C. Both are
// for the test that the constructor above takes effect.
func mallocArenas() int { return int(C.eos_malloc_arenas()) }
func mallocChurn(n int) { C.eos_malloc_churn(C.int(n)) }
