//go:build !musl

package librdkafka

import (
	"os"
	"runtime"
	"sync"
	"testing"
)

func TestMallocUsesOneArena(t *testing.T) {
	if _, set := os.LookupEnv("MALLOC_ARENA_MAX"); set {
		t.Skip("MALLOC_ARENA_MAX is set: the operator's choice wins")
	}
	// Threads that malloc at the same time are when glibc adds arenas.
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			runtime.LockOSThread() // a thread of its own, released with the goroutine
			for range 50 {
				mallocChurn(1000)
			}
		})
	}
	wg.Wait()
	if n := mallocArenas(); n != 1 {
		t.Fatalf("%d malloc arenas after 16 threads allocated at once, want 1", n)
	}
}
