package e2e

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	tc "github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/testcontainers"
)

// imageEnv names the processor image under test; `make image` builds it and the Makefile exports its name.
const imageEnv = "EOSPROC_IMAGE"

// TestContainerImageCopiesExactlyOnce runs the image Dockerfile builds (scratch, the static binary, no librdkafka
// anywhere else) as a container on the cluster's Docker network, reaching the brokers at their INTERNAL listener
// as a pod would, and checks one exactly-once copy, the probes, the non-root user and a clean SIGTERM stop.
func TestContainerImageCopiesExactlyOnce(t *testing.T) {
	image := os.Getenv(imageEnv)
	if image == "" {
		image = "eosproc/processor:dev"
	}
	if testing.Short() {
		t.Skip("needs Docker and Kafka: skipped with -short")
	}
	if out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Size}} {{.Config.User}}", image).Output(); err != nil {
		if testcontainers.InCI() {
			t.Fatalf("CI=true and image %s is missing: run 'make image' (make test does): %v", image, err)
		}
		t.Skipf("image %s is missing: run 'make image'", image)
	} else {
		fields := strings.Fields(string(out))
		if len(fields) < 2 || strings.HasPrefix(fields[1], "0") || fields[1] == "root" {
			t.Fatalf("image %s runs as %q, want a non-root user", image, strings.Join(fields[1:], " "))
		}
		size, _ := strconv.ParseFloat(fields[0], 64)
		t.Logf("image %s: %.1f MB, user %s", image, size/1e6, fields[1])
	}

	f := newFixture(t, fixtureOptions{inputPartitions: 3, outputPartitions: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n = 20_000
	f.produce(ctx, 3, 0, n, nil)

	started := time.Now()
	ctr, err := tc.GenericContainer(ctx, tc.GenericContainerRequest{
		ContainerRequest: tc.ContainerRequest{
			Image: image,
			Env: map[string]string{
				"PROCESSOR_BROKERS":             f.cluster.InternalBootstrapServers(),
				"PROCESSOR_INPUT_TOPICS":        f.input,
				"PROCESSOR_OUTPUT_TOPIC":        f.output,
				"PROCESSOR_DEAD_LETTER_TOPIC":   f.dlq,
				"PROCESSOR_APP_ID":              "e2e",
				"PROCESSOR_GROUP_ID":            f.group,
				"PROCESSOR_INSTANCE_ID":         "container-0",
				"PROCESSOR_BATCH_INTERVAL":      "300ms",
				"PROCESSOR_TRANSACTION_TIMEOUT": "20s",
			},
			Networks:     []string{f.cluster.NetworkName()},
			ExposedPorts: []string{"8080/tcp"},
			// Ready means the producer fenced its predecessors and partitions are assigned: the readiness probe
			// of the Kubernetes example, asked from outside the container.
			WaitingFor: wait.ForHTTP("/readyz").WithPort("8080/tcp").WithStartupTimeout(2 * time.Minute),
		},
		Started: true,
	})
	if err != nil {
		t.Fatalf("run image %s: %v", image, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if rc, err := ctr.Logs(context.Background()); err == nil {
				b, _ := io.ReadAll(rc)
				rc.Close()
				t.Logf("processor container log, last lines:\n%s", lastLines(string(b), 30))
			}
		}
		_ = ctr.Terminate(context.Background())
	})
	f.waitCaughtUp(ctx)
	t.Logf("%d records copied by the container in %s", n, time.Since(started).Round(100*time.Millisecond))

	endpoint, err := ctr.PortEndpoint(ctx, "8080/tcp", "http")
	if err != nil {
		t.Fatal(err)
	}
	// The counter moves once a commit has returned to the processor, which may be a moment after the group's
	// offsets show it: wait for it, but it must never count more than was written.
	var in float64
	err = testcontainers.WaitFor(ctx, "eosproc_records_in_total to count every record", func(ctx context.Context) (bool, error) {
		var err error
		in, err = procrun.SumMetric(strings.NewReader(httpGet(ctx, t, endpoint+"/metrics")), "eosproc_records_in_total")
		return err == nil && in >= n, err
	})
	if err != nil || in != n {
		t.Errorf("eosproc_records_in_total = %v (%v), want %d", in, err, n)
	}
	if got := httpGet(ctx, t, endpoint+"/healthz"); !strings.Contains(got, "ok") {
		t.Errorf("/healthz = %q", got)
	}

	stop := 45 * time.Second
	if err := ctr.Stop(ctx, &stop); err != nil {
		t.Fatal(err)
	}
	state, err := ctr.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if state.ExitCode != 0 {
		t.Fatalf("container exited %d after SIGTERM, want 0", state.ExitCode)
	}
	r := f.verdict(ctx, true)
	if !r.OK() || r.Inputs != n {
		t.Fatalf("want %d inputs each exactly once from the container: %s", n, r)
	}
}
