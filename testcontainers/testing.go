package testcontainers

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	tc "github.com/testcontainers/testcontainers-go"
)

// InCI reports whether the tests run in CI (CI=true), where a test that needs Kafka must fail, never skip, when
// Kafka cannot be started: a skipped correctness test is a hidden red.
func InCI() bool {
	ci := strings.ToLower(os.Getenv("CI"))
	return ci == "true" || ci == "1"
}

// StartForTest starts a cluster for t and removes it when t ends. When t fails, each broker's log is written to a
// file (named in the test output) and its last lines are logged. With -short the test is skipped (unit runs);
// without a Docker engine it is skipped too, except in CI, where it fails.
func StartForTest(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Kafka cluster in Docker: skipped with -short")
	}
	ctx := context.Background()
	if err := dockerAnswers(ctx); err != nil {
		if InCI() {
			t.Fatalf("CI=true and no Docker engine answers, so Kafka cannot start (run 'make setup'): %v", err)
		}
		t.Skipf("no Docker engine answers (run 'make setup' to install and start one): %v", err)
	}
	started := time.Now()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("start Kafka for the test: %v", err)
	}
	t.Logf("kafka: %d broker(s) of %s ready in %s at %s", len(c.brokers), c.image,
		time.Since(started).Round(100*time.Millisecond), c.BootstrapServers())
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogsForTest(t)
		}
		if err := c.Terminate(context.Background()); err != nil {
			t.Logf("terminate kafka cluster: %v", err)
		}
	})
	return c
}

func dockerAnswers(ctx context.Context) error {
	docker, err := tc.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer docker.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = docker.Ping(ctx, client.PingOptions{})
	return err
}

// dumpLogsForTest keeps every broker's full log in a file that outlives the test and shows its tail inline.
func (c *Cluster) dumpLogsForTest(t testing.TB) {
	dir, err := os.MkdirTemp("", "kafka-logs-"+sanitize(t.Name())+"-")
	if err != nil {
		t.Logf("keep broker logs: %v", err)
		return
	}
	for _, b := range c.brokers {
		var buf bytes.Buffer
		if err := c.Logs(context.Background(), b.id, &buf); err != nil {
			t.Logf("broker %d: %v", b.id, err)
			continue
		}
		path := filepath.Join(dir, fmt.Sprintf("broker-%d.log", b.id))
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Logf("broker %d: write %s: %v", b.id, path, err)
		}
		t.Logf("broker %d log: %s; last lines:\n%s", b.id, path, LastLines(buf.String(), 30))
	}
}

// LastLines is the last n lines of a log, for failure messages that must stay readable.
func LastLines(log string, n int) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '_'
		}
		return r
	}, name)
}
