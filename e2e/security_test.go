package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/testcontainers"
)

// secureListener is the broker's SASL_SSL listener in these tests; INTERNAL and EXTERNAL stay PLAINTEXT, so the
// test writes input and reads the verdict as before and only the processor goes through TLS and SCRAM.
const secureListener = "SECURE"

// pki is what the test makes with crypto/x509: a CA, the broker's PEM keystore signed by it, and a second CA
// that signed nothing the broker has.
type pki struct {
	caPEM, keystorePEM, strangerCAPEM []byte
}

func newPKI(t *testing.T) pki {
	t.Helper()
	caKey, caCert, caPEM := newCA(t, "eosproc test CA")
	_, _, strangerPEM := newCA(t, "eosproc stranger CA")

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kafka-1"},
		DNSNames:     []string{"localhost", "kafka-1", "kafka-2", "kafka-3"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Kafka's PEM keystore (ssl.keystore.type=PEM): an unencrypted PKCS#8 key, then the chain, leaf first.
	var ks bytes.Buffer
	_ = pem.Encode(&ks, &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	_ = pem.Encode(&ks, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	ks.Write(caPEM)
	return pki{caPEM: caPEM, keystorePEM: ks.Bytes(), strangerCAPEM: strangerPEM}
}

func newCA(t *testing.T, name string) (*rsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// secureKafka is the broker side: a SASL_SSL listener with SCRAM-SHA-512 and the PEM keystore.
func secureKafka(p pki) testcontainers.Options {
	const keystore = "/tmp/eosproc-secure-keystore.pem"
	prefix := "listener.name." + strings.ToLower(secureListener) + "."
	return testcontainers.Options{
		Listeners: []testcontainers.Listener{{Name: secureListener, Protocol: "SASL_SSL"}},
		Files:     map[string][]byte{keystore: p.keystorePEM},
		BrokerConfig: map[string]string{
			prefix + "sasl.enabled.mechanisms":        "SCRAM-SHA-512",
			prefix + "scram-sha-512.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
			prefix + "ssl.keystore.type":              "PEM",
			prefix + "ssl.keystore.location":          keystore,
		},
	}
}

// TestSASLSSLCopiesExactlyOnceAndNeverShowsTheSecret runs the processor against a SASL_SSL listener (TLS with a CA
// the test made, SCRAM-SHA-512 user created through the admin API) with the password in a file, checks the copy
// is exactly once, and greps everything the processor showed (log, /metrics, -h) for the password. Then a wrong
// password and an untrusted CA must each end in exit 1 with a message saying what to check, and not before
// PROCESSOR_AUTH_FAILURE_TIMEOUT: the bounded life that keeps a restart loop from hammering the brokers.
func TestSASLSSLCopiesExactlyOnceAndNeverShowsTheSecret(t *testing.T) {
	p := newPKI(t)
	f := newFixture(t, fixtureOptions{inputPartitions: 3, outputPartitions: 3, kafka: secureKafka(p)})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	const password = "Sup3r-s3cret-SCRAM-pa55word" // what must never show
	const wrongPassword = "Wr0ng-pa55word-also-secret"
	if err := f.cluster.UpsertScramCredential(ctx, "alice", password); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, content []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	secure := map[string]string{
		"PROCESSOR_BROKERS":            f.cluster.ListenerBootstrapServers(secureListener),
		"PROCESSOR_SECURITY_PROTOCOL":  "sasl_ssl",
		"PROCESSOR_SASL_USERNAME":      "alice",
		"PROCESSOR_SASL_PASSWORD_FILE": write("password", []byte(password+"\n")),
		"PROCESSOR_TLS_CA_FILE":        write("ca.pem", p.caPEM),
		"PROCESSOR_LOG_LEVEL":          "debug",
	}

	const n = 20_000
	f.produce(ctx, 3, 0, n, nil)
	started := time.Now()
	in := f.start("secure-0", secure)
	f.waitCaughtUp(ctx)
	t.Logf("%d records copied over SASL_SSL in %s", n, time.Since(started).Round(100*time.Millisecond))
	metrics := httpGet(ctx, t, "http://"+in.HTTPAddr+"/metrics")
	f.stopAll()
	r := f.verdict(ctx, true)
	if !r.OK() || r.Inputs != n {
		t.Fatalf("want %d inputs each exactly once over SASL_SSL: %s", n, r)
	}
	checkMetricsDocumented(t, metrics)

	help, err := exec.CommandContext(ctx, f.bin, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("processor -h: %v", err)
	}
	for name, out := range map[string]string{"log": in.Log(), "/metrics": metrics, "-h": string(help)} {
		if strings.Contains(out, password) {
			t.Errorf("the SASL password appears in the processor's %s", name)
		}
	}
	if !strings.Contains(in.Log(), `"PROCESSOR_SASL_PASSWORD_FILE":"`) {
		t.Error("the logged configuration should name the password file")
	}

	// Misconfigured replicas: each must give up after the timeout, exit 1, and say what to check.
	const authTimeout = 8 * time.Second
	cases := []struct {
		name  string
		env   map[string]string
		wants []string
	}{
		{"wrong password", map[string]string{"PROCESSOR_SASL_PASSWORD_FILE": "", "PROCESSOR_SASL_PASSWORD": wrongPassword},
			[]string{"authentication to the brokers failing", "PROCESSOR_SASL_PASSWORD_FILE"}},
		{"untrusted certificate", map[string]string{"PROCESSOR_TLS_CA_FILE": write("stranger.pem", p.strangerCAPEM)},
			[]string{"TLS handshake with the brokers failing", "PROCESSOR_TLS_CA_FILE"}},
	}
	type run struct {
		started  time.Time
		instance *procrun.Instance
	}
	runs := make([]run, len(cases))
	for i, c := range cases {
		env := map[string]string{"PROCESSOR_AUTH_FAILURE_TIMEOUT": authTimeout.String()}
		for k, v := range secure {
			env[k] = v
		}
		for k, v := range c.env {
			env[k] = v
		}
		if env["PROCESSOR_SASL_PASSWORD_FILE"] == "" {
			delete(env, "PROCESSOR_SASL_PASSWORD_FILE")
		}
		runs[i] = run{started: time.Now(), instance: f.start("bad-"+strings.ReplaceAll(c.name, " ", "-"), env)}
	}
	for i, c := range cases {
		in := runs[i].instance
		select {
		case <-in.Done():
		case <-time.After(authTimeout + time.Minute):
			t.Fatalf("%s: still running %s after the auth failure timeout; want exit 1", c.name, time.Minute)
		}
		lived := time.Since(runs[i].started)
		log := in.Log()
		t.Logf("%s: exit %d after %s; last line: %s", c.name, in.ExitCode(), lived.Round(100*time.Millisecond), testcontainers.LastLines(log, 1))
		if in.ExitCode() != 1 {
			t.Errorf("%s: exit code %d, want 1", c.name, in.ExitCode())
		}
		if lived < authTimeout {
			t.Errorf("%s: exited after %s, before PROCESSOR_AUTH_FAILURE_TIMEOUT (%s): a restart loop would hammer the brokers", c.name, lived, authTimeout)
		}
		for _, want := range c.wants {
			if !strings.Contains(log, want) {
				t.Errorf("%s: log lacks %q", c.name, want)
			}
		}
		for _, secret := range []string{password, wrongPassword} {
			if strings.Contains(log, secret) {
				t.Errorf("%s: the log shows a password", c.name)
			}
		}
	}
	// Each rejected client retries about once a second (reconnect.backoff.ms, which the processor raises to 1 s
	// because librdkafka does not grow it after failed TLS handshakes): four clients over the window try a few
	// dozen times, not the ~240 of librdkafka's 100 ms. The broker logs every failed handshake and login.
	var brokerLog bytes.Buffer
	if err := f.cluster.Logs(ctx, 1, &brokerLog); err != nil {
		t.Fatal(err)
	}
	failed := len(regexp.MustCompile(`Failed authentication with`).FindAllIndex(brokerLog.Bytes(), -1))
	t.Logf("broker logged %d failed authentications during the %s window", failed, authTimeout)
	if failed == 0 || failed > 80 {
		t.Errorf("broker saw %d failed authentications in %s: want some (the wrong password was tried) and few (backoff)", failed, authTimeout)
	}
}

func httpGet(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// checkMetricsDocumented fails when the processor exposes an eosproc_ metric that docs/metrics.md does not
// describe, so the reference cannot fall behind the code.
func checkMetricsDocumented(t *testing.T, exposition string) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^# HELP (eosproc_\w+) `).FindAllStringSubmatch(exposition, -1) {
		if !strings.Contains(string(doc), "`"+m[1]+"`") {
			t.Errorf("metric %s is exposed but not described in docs/metrics.md", m[1])
		}
	}
}
