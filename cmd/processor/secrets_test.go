package main

import (
	"context"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/processor"
	"github.com/eosproc/eosproc/testcontainers"
)

// TestNoOutputShowsASecret runs the binary with every secret-bearing setting set to a marker, librdkafka's debug
// logging on and brokers that never answer, and greps everything the process shows for the markers: its log,
// each HTTP endpoint and the profiler, the goroutine dump a SIGQUIT crash prints, and the exit-2 message of a
// configuration mistake made beside a secret.
func TestNoOutputShowsASecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := procrun.Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{ // variable: value, each value holding a marker
		"PROCESSOR_SASL_PASSWORD":         "marker-sasl-password",
		"PROCESSOR_TLS_KEY_PASSWORD_FILE": writeFile(t, dir, "tls-key-password", "marker-tls-key-password\n"),
		"PROCESSOR_SASL_USERNAME":         "marker-sasl-username", // librdkafka redacts it too
		"PROCESSOR_KAFKA_PROPERTIES":      "sasl.oauthbearer.client.secret=marker-oauth-secret;debug=all",
		"PROCESSOR_PRODUCER_PROPERTIES":   "ssl.key.pem=marker-key-pem",
		"PROCESSOR_CONSUMER_PROPERTIES":   "sasl.oauthbearer.config=principal=p marker-oauth-config",
	}
	markers := []string{"marker-sasl-password", "marker-tls-key-password", "marker-sasl-username", "marker-oauth-secret", "marker-key-pem", "marker-oauth-config"}
	pprofAddr := freeAddr(t)
	env := map[string]string{
		"PROCESSOR_BROKERS":      freeAddr(t), // nothing listens: the clients retry for ever, logging as they go
		"PROCESSOR_INPUT_TOPICS": "in", "PROCESSOR_OUTPUT_TOPIC": "out",
		"PROCESSOR_SECURITY_PROTOCOL": "sasl_plaintext",
		"PROCESSOR_LOG_LEVEL":         "debug", "PROCESSOR_PPROF_ADDR": pprofAddr, "GOTRACEBACK": "all",
	}
	maps.Copy(env, secrets)
	in, err := procrun.Start(bin, "secrets", filepath.Join(dir, "processor.log"), env)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Kill()
	// librdkafka's configuration dump (debug=all) is what would show a property's value; wait for it.
	for !strings.Contains(in.Log(), "Client configuration") {
		select {
		case <-in.Done():
			t.Fatalf("exited with %d before librdkafka's configuration dump:\n%s", in.ExitCode(), in.Log())
		case <-ctx.Done():
			t.Fatalf("no librdkafka configuration dump in the log:\n%s", in.Log())
		case <-time.After(50 * time.Millisecond): // polling the log a child process writes
		}
	}
	outputs := map[string]string{}
	for _, url := range []string{"http://" + in.HTTPAddr + "/metrics", "http://" + in.HTTPAddr + "/healthz", "http://" + in.HTTPAddr + "/readyz",
		"http://" + pprofAddr + "/debug/pprof/cmdline", "http://" + pprofAddr + "/debug/pprof/goroutine?debug=2"} {
		outputs[url] = get(ctx, t, url)
	}
	if !strings.Contains(outputs["http://"+in.HTTPAddr+"/metrics"], "eosproc_build_info") {
		t.Fatalf("/metrics not served: %.300s", outputs["http://"+in.HTTPAddr+"/metrics"])
	}
	// A crash: Go prints every goroutine's stack and exits 2.
	if err := in.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-in.Done():
	case <-ctx.Done():
		t.Fatal("still running after SIGQUIT")
	}
	log := in.Log()
	outputs["the log, with the SIGQUIT goroutine dump"] = log
	for _, want := range []string{"goroutine ", "sasl.password = [redacted]", `"PROCESSOR_SASL_PASSWORD":"[redacted]"`} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q (the crash dump, librdkafka's and the processor's redaction)", want)
		}
	}

	// A configuration mistake beside the secrets: exit 2, and the message shows none of them.
	bad := exec.CommandContext(ctx, bin)
	bad.Env = withoutProcessorVars(os.Environ())
	for k, v := range env {
		bad.Env = append(bad.Env, k+"="+v)
	}
	bad.Env = append(bad.Env, "PROCESSOR_BATCH_INTERVAL=abc", "PROCESSOR_KAFKA_PROPERTIES=sasl.password:marker-malformed")
	out, _ := bad.CombinedOutput()
	if bad.ProcessState.ExitCode() != processor.ExitConfig {
		t.Errorf("bad configuration: exit code %d, want %d:\n%s", bad.ProcessState.ExitCode(), processor.ExitConfig, out)
	}
	outputs["exit-2 message"] = string(out)
	markers = append(markers, "marker-malformed")

	for name, text := range outputs {
		for _, secret := range markers {
			if strings.Contains(text, secret) {
				i := strings.Index(text, secret)
				t.Errorf("%s shows %q: ...%s...", name, secret, text[max(0, i-200):min(len(text), i+100)])
			}
		}
	}
}

// freeAddr is a loopback address nothing listens on (for the moment).
func freeAddr(t *testing.T) string {
	port, err := testcontainers.FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// get fetches url, retrying while the server is not up yet.
func get(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(body)
		}
		if ctx.Err() != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond) // the listener comes up with the process
	}
}

// writeFile writes content to dir/name and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
