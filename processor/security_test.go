package processor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

const testSecret = "s3cr3t-Pa55w0rd-d0-n0t-l34k"

func TestSecurityVariablesMapOntoLibrdkafka(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("not checked here"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(with(minimal,
		"PROCESSOR_SECURITY_PROTOCOL=SASL_SSL", "PROCESSOR_SASL_USERNAME=alice", "PROCESSOR_SASL_PASSWORD_FILE="+pwFile,
		"PROCESSOR_TLS_CA_FILE="+ca))
	if err != nil {
		t.Fatal(err)
	}
	got := clientProperties(cfg.securityProperties(), cfg.KafkaProperties, cfg.ProducerProperties)
	want := map[string]string{
		"security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice",
		"sasl.password": testSecret, "ssl.ca.location": ca,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	// Resolving again (Run does) must not see the file and the value it filled in as a conflict.
	if err := cfg.resolve(); err != nil {
		t.Fatalf("second resolve: %v", err)
	}
}

func TestSecurityMisconfigurationNamesTheVariable(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	sasl := []string{"PROCESSOR_SECURITY_PROTOCOL=sasl_ssl", "PROCESSOR_SASL_USERNAME=alice"}
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"unknown protocol", []string{"PROCESSOR_SECURITY_PROTOCOL=tls"}, `PROCESSOR_SECURITY_PROTOCOL: "tls": must be one of`},
		{"unknown mechanism", append(sasl, "PROCESSOR_SASL_MECHANISM=GSSAPI"), `PROCESSOR_SASL_MECHANISM: "GSSAPI"`},
		{"user without sasl protocol", []string{"PROCESSOR_SASL_USERNAME=alice"}, "PROCESSOR_SASL_USERNAME: is set but PROCESSOR_SECURITY_PROTOCOL"},
		{"password without user", []string{"PROCESSOR_SASL_PASSWORD=" + testSecret}, "PROCESSOR_SASL_PASSWORD: is set but PROCESSOR_SASL_USERNAME is not"},
		{"password and file", append(sasl, "PROCESSOR_SASL_PASSWORD="+testSecret, "PROCESSOR_SASL_PASSWORD_FILE="+pwFile), "PROCESSOR_SASL_PASSWORD and PROCESSOR_SASL_PASSWORD_FILE are both set"},
		{"missing password file", append(sasl, "PROCESSOR_SASL_PASSWORD_FILE="+filepath.Join(dir, "nope")), "PROCESSOR_SASL_PASSWORD_FILE: cannot read the secret file"},
		{"missing CA file", []string{"PROCESSOR_TLS_CA_FILE=" + filepath.Join(dir, "ca.pem")}, "PROCESSOR_TLS_CA_FILE: cannot read"},
		{"cert without key", []string{"PROCESSOR_TLS_CERT_FILE=" + pwFile}, "PROCESSOR_TLS_CERT_FILE and PROCESSOR_TLS_KEY_FILE go together"},
		{"variable and property clash", append(sasl, "PROCESSOR_KAFKA_PROPERTIES=sasl.username=bob"), `PROCESSOR_KAFKA_PROPERTIES: "sasl.username" is also set by PROCESSOR_SASL_USERNAME`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(with(minimal, tt.env...))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error shows the secret: %q", err)
			}
		})
	}
}

// TestSecretNeverShown prints a configuration holding secrets every way a log line, an error or a debug print
// could, and greps each output for the secrets.
func TestSecretNeverShown(t *testing.T) {
	cfg, err := LoadConfig(with(minimal, "PROCESSOR_SECURITY_PROTOCOL=sasl_ssl", "PROCESSOR_SASL_USERNAME=alice",
		"PROCESSOR_SASL_PASSWORD="+testSecret, "PROCESSOR_TLS_KEY_PASSWORD="+testSecret+"-key",
		"PROCESSOR_PRODUCER_PROPERTIES=sasl.oauthbearer.client.secret="+testSecret+"-oauth"))
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("start", "config", cfg.LogValue(), "cfg", cfg, "password", cfg.SASLPassword)
	var usage bytes.Buffer
	PrintUsage(&usage)
	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg),
		"String": cfg.String(), "slog": logged.String(), "usage": usage.String(),
		"secret %s": fmt.Sprintf("%s %v %q", cfg.SASLPassword, cfg.SASLPassword, cfg.SASLPassword),
	}
	for name, out := range outputs {
		if strings.Contains(out, testSecret) {
			t.Errorf("%s output shows a secret: %s", name, out)
		}
	}
	if !strings.Contains(cfg.String(), `"PROCESSOR_SASL_PASSWORD":"[redacted]"`) {
		t.Errorf("logged config should say a password is set, redacted: %s", cfg.String())
	}
	// A malformed value that may hold a secret is not echoed back in the error.
	_, err = LoadConfig(with(minimal, "PROCESSOR_KAFKA_PROPERTIES=sasl.password:"+testSecret))
	if err == nil || strings.Contains(err.Error(), testSecret) || !strings.Contains(err.Error(), "PROCESSOR_KAFKA_PROPERTIES") {
		t.Errorf("malformed secret property: error %v should name the variable and hide the value", err)
	}
}

func TestAuthFailuresBecomeFatalOnlyAfterTheTimeout(t *testing.T) {
	w := &authWatch{}
	w.observe(kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down", false))
	if err := w.check(0); err != nil {
		t.Fatalf("a broker being down is waited out, got %v", err)
	}
	w.observe(kafka.NewError(kafka.ErrAuthentication, "SASL authentication error: invalid credentials", false))
	if err := w.check(time.Hour); err != nil {
		t.Fatalf("before the timeout: %v", err)
	}
	err := w.check(0)
	if err == nil || !strings.Contains(err.Error(), "PROCESSOR_SASL_PASSWORD_FILE") || !strings.Contains(err.Error(), "invalid credentials") {
		t.Fatalf("after the timeout: %v, want the cause and what to check", err)
	}

	tlsWatch := &authWatch{}
	tlsWatch.observe(kafka.NewError(kafka.ErrSsl, "SSL handshake failed: certificate verify failed", false))
	if err := tlsWatch.check(0); err == nil || !strings.Contains(err.Error(), "PROCESSOR_TLS_CA_FILE") {
		t.Fatalf("TLS failure: %v, want a hint at PROCESSOR_TLS_CA_FILE", err)
	}

	// Once connected, the watch ends without failing, whatever it saw before.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	failed := make(chan error, 1)
	w.run(ctx, 0, time.Millisecond, func() bool { return true }, func(err error) { failed <- err })
	select {
	case err := <-failed:
		t.Fatalf("connected, yet the watch failed the run: %v", err)
	default:
	}
	w.run(ctx, 0, time.Millisecond, func() bool { return false }, func(err error) { failed <- err })
	if len(failed) != 1 {
		t.Fatal("not connected after the timeout, yet the watch did not fail the run")
	}
}
