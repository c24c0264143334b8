package e2e

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	tc "github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/testcontainers"
)

// imageEnv names the processor image under test; `make image` builds it and the Makefile exports its name.
const imageEnv = "EOSPROC_IMAGE"

// processorImage is the processor image under test, checked to exist and to run as a non-root user.
func processorImage(t *testing.T) string {
	t.Helper()
	image := cmp.Or(os.Getenv(imageEnv), "eosproc/processor:dev")
	if testing.Short() {
		t.Skip("needs Docker: skipped with -short")
	}
	out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Size}} {{.Config.User}}", image).Output()
	if err != nil {
		if testcontainers.InCI() {
			t.Fatalf("CI=true and image %s is missing: run 'make image' (make test does): %v", image, err)
		}
		t.Skipf("image %s is missing: run 'make image'", image)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 2 || strings.HasPrefix(fields[1], "0") || fields[1] == "root" {
		t.Fatalf("image %s runs as %q, want a non-root user", image, strings.Join(fields[1:], " "))
	}
	size, _ := strconv.ParseFloat(fields[0], 64)
	t.Logf("image %s: %.1f MB, user %s", image, size/1e6, fields[1])
	return image
}

// TestContainerImageCopiesExactlyOnce runs the image Dockerfile builds (scratch, the static binary, no librdkafka
// anywhere else) as a container on the cluster's Docker network, reaching the brokers at their INTERNAL listener
// as a pod would, and checks one exactly-once copy, the probes, the non-root user and a clean SIGTERM stop.
func TestContainerImageCopiesExactlyOnce(t *testing.T) {
	image := processorImage(t)

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
				t.Logf("processor container log, last lines:\n%s", testcontainers.LastLines(string(b), 30))
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

// TestImageReadsASecretMountedAsKubernetesDoes runs the image as deploy/k8s/statefulset.yaml does (user 65532)
// with the SASL password file mounted as that manifest mounts its Secret: owned by root, group 65532 (fsGroup)
// and mode 0440 (defaultMode). Docker has no fsGroup, so the test gives the host file that group and mode. The
// processor must read it and start; the same file root-owned with 0400, as the manifest once mounted it, must
// stop it at start with exit 2 naming the variable.
func TestImageReadsASecretMountedAsKubernetesDoes(t *testing.T) {
	image := processorImage(t)
	if os.Geteuid() != 0 {
		t.Skip("giving the secret file root's ownership needs root") // CI and make test run as root here
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const target = "/var/run/secrets/eosproc/sasl-password"
	run := func(t *testing.T, gid, mode int) tc.Container {
		path := filepath.Join(t.TempDir(), "sasl-password")
		if err := os.WriteFile(path, []byte("not-the-real-password\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, 0, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, os.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
		ctr, err := tc.GenericContainer(ctx, tc.GenericContainerRequest{
			ContainerRequest: tc.ContainerRequest{
				Image: image,
				Env: map[string]string{
					// No broker answers there: reading the configuration is what is tested.
					"PROCESSOR_BROKERS":            "127.0.0.1:1",
					"PROCESSOR_INPUT_TOPICS":       "in",
					"PROCESSOR_OUTPUT_TOPIC":       "out",
					"PROCESSOR_SECURITY_PROTOCOL":  "sasl_plaintext",
					"PROCESSOR_SASL_USERNAME":      "alice",
					"PROCESSOR_SASL_PASSWORD_FILE": target,
				},
				ExposedPorts: []string{"8080/tcp"},
				HostConfigModifier: func(hc *container.HostConfig) {
					hc.Binds = append(hc.Binds, path+":"+target+":ro")
				},
			},
			Started: true,
		})
		if err != nil {
			t.Fatalf("run image %s: %v", image, err)
		}
		t.Cleanup(func() { _ = ctr.Terminate(context.Background()) })
		return ctr
	}
	logOf := func(ctr tc.Container) string {
		rc, err := ctr.Logs(ctx)
		if err != nil {
			return err.Error()
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return string(b)
	}

	t.Run("root:65532 0440 as the manifest mounts it", func(t *testing.T) {
		ctr := run(t, 65532, 0o440)
		endpoint, err := ctr.PortEndpoint(ctx, "8080/tcp", "http")
		if err != nil {
			t.Fatal(err)
		}
		// Serving /healthz means the configuration, password file included, was read.
		err = testcontainers.WaitFor(ctx, "the processor to serve /healthz", func(ctx context.Context) (bool, error) {
			if state, err := ctr.State(ctx); err != nil || !state.Running {
				return false, fmt.Errorf("container not running (%v):\n%s", err, logOf(ctr))
			}
			return strings.Contains(httpGetQuiet(ctx, endpoint+"/healthz"), "ok"), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if log := logOf(ctr); !strings.Contains(log, `"PROCESSOR_SASL_PASSWORD_FILE":"`+target+`"`) || strings.Contains(log, "not-the-real-password") {
			t.Errorf("the start-up log should name the password file and never show the password:\n%s", testcontainers.LastLines(log, 10))
		}
	})
	t.Run("root:root 0400 is refused at start", func(t *testing.T) {
		ctr := run(t, 0, 0o400)
		err := testcontainers.WaitFor(ctx, "the processor to exit", func(ctx context.Context) (bool, error) {
			state, err := ctr.State(ctx)
			return err == nil && !state.Running, err
		})
		if err != nil {
			t.Fatal(err)
		}
		state, _ := ctr.State(ctx)
		log := logOf(ctr)
		if state.ExitCode != 2 || !strings.Contains(log, "PROCESSOR_SASL_PASSWORD_FILE") || !strings.Contains(log, "permission denied") {
			t.Errorf("exit %d, want 2 with a message naming PROCESSOR_SASL_PASSWORD_FILE and the permission:\n%s", state.ExitCode, log)
		}
	})
}

// httpGetQuiet is GET url's body, or "" while the server does not answer 200: for polling a starting process.
func httpGetQuiet(ctx context.Context, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}
