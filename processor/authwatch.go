package processor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// authWatch turns a refused login or TLS handshake into a clear fatal error.
//
// The failure: with a wrong password or a CA that does not sign the brokers' certificates, librdkafka reports an
// error event and keeps reconnecting; InitTransactions just times out, and the loop would retry it forever while
// /healthz stays green (the retries count as progress). Nobody learns what is wrong.
//
// The choice: such failures are not retried forever but not given up at the first one either. A SCRAM user
// created a moment ago reaches every broker within seconds, and a certificate being rotated may fail a handshake
// or two. So the first failure starts a clock; if the processor has not got through to the brokers (the producer
// initialised, or in at_least_once the consumer got partitions) within PROCESSOR_AUTH_FAILURE_TIMEOUT, it stops
// with an error that says what to check, and the binary exits 1.
//
// Why this cannot hammer the brokers: the bound is also the shortest life of a misconfigured replica. Within it
// librdkafka reconnects at least reconnect.backoff.ms apart, which clientDefaults raises to 1 s because a failed
// TLS handshake does not lengthen librdkafka's pause: about thirty attempts per broker in the default 30 s. A
// supervisor that restarts the process at once starts the next 30 s; Kubernetes' CrashLoopBackOff and Docker's
// restart delay add their own growing pause on top. A failure that ends the process at once (a missing CA file)
// is a configuration error found before any connection is made.
type authWatch struct {
	mu    sync.Mutex
	first time.Time   // first failure seen; zero when none
	last  kafka.Error // most recent failure
}

// observe is the clients' OnError hook: it keeps authentication and TLS failures and ignores the rest (a broker
// being down is waited out, not fatal).
func (w *authWatch) observe(e kafka.Error) {
	switch e.Code() {
	case kafka.ErrAuthentication, kafka.ErrSaslAuthenticationFailed, kafka.ErrSsl:
	default:
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first.IsZero() {
		w.first = time.Now()
	}
	w.last = e
}

// run checks every tick until connected reports true (the watch is over: later failures are the loop's to
// retry) or ctx ends. When failures have gone on for timeout without connecting, it calls fail with the error.
func (w *authWatch) run(ctx context.Context, timeout, tick time.Duration, connected func() bool, fail func(error)) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if connected() {
			return
		}
		if err := w.check(timeout); err != nil {
			fail(err)
			return
		}
	}
}

// check returns the fatal error once failures have gone on for timeout, else nil.
func (w *authWatch) check(timeout time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first.IsZero() || time.Since(w.first) < timeout {
		return nil
	}
	return &AuthError{Err: w.last, For: time.Since(w.first).Round(time.Second)}
}

// AuthError is a refused login or TLS handshake that went on for PROCESSOR_AUTH_FAILURE_TIMEOUT.
type AuthError struct {
	Err kafka.Error
	For time.Duration
}

func (e *AuthError) Error() string {
	if e.Err.Code() == kafka.ErrSsl {
		return fmt.Sprintf("TLS handshake with the brokers failing for %s: %v; check that PROCESSOR_TLS_CA_FILE holds the CA "+
			"that signed the brokers' certificates, that those certificates name the hosts in PROCESSOR_BROKERS, and that "+
			"PROCESSOR_SECURITY_PROTOCOL matches the brokers' listener", e.For, e.Err)
	}
	return fmt.Sprintf("authentication to the brokers failing for %s: %v; check PROCESSOR_SASL_USERNAME, the password "+
		"(PROCESSOR_SASL_PASSWORD or PROCESSOR_SASL_PASSWORD_FILE) and PROCESSOR_SASL_MECHANISM against the user "+
		"defined on the brokers", e.For, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }
