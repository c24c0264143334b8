package rdkafka

import (
	"slices"
	"testing"
)

func TestOwnedMismatch(t *testing.T) {
	set := map[string]string{"a": "1", "b": "2", "c": "3"}
	listed := map[string]string{"a": "why", "b": "why", "d": "why", "alias": "why"}
	unlisted, unset := OwnedMismatch(set, listed, "alias")
	if !slices.Equal(unlisted, []string{"c"}) || !slices.Equal(unset, []string{"d"}) {
		t.Errorf("OwnedMismatch = %v, %v; want [c] set but not listed, [d] listed but not set", unlisted, unset)
	}
	if u, n := OwnedMismatch(set, map[string]string{"a": "", "b": "", "c": ""}); len(u)+len(n) > 0 {
		t.Errorf("OwnedMismatch of matching lists = %v, %v; want none", u, n)
	}
}

func TestPropertiesRefuseOwnedAndRefusedKeys(t *testing.T) {
	owned := map[string]string{"isolation.level": "read_committed"}
	refused := map[string]string{"metadata.broker.list": "set the brokers on their own"}
	if _, err := Properties(owned, refused, map[string]string{"isolation.level": "read_uncommitted"}); err == nil {
		t.Error("an owned key was accepted")
	}
	if _, err := Properties(owned, refused, map[string]string{"metadata.broker.list": "x:1"}); err == nil {
		t.Error("a refused key was accepted")
	}
	m, err := Properties(owned, refused, map[string]string{"fetch.max.bytes": "100"})
	if err != nil || m["fetch.max.bytes"] != "100" || m["isolation.level"] != "read_committed" {
		t.Errorf("Properties = %v, %v; want both the owned and the pass-through key", m, err)
	}
}

func TestIsSecret(t *testing.T) {
	for s, want := range map[string]bool{
		"sasl.password": true, "SASL.PASSWORD": true, "ssl.ca.pem": true, "sasl.username": true,
		"sasl.jaas.config": true, "ssl.truststore.password": true, "sasl.password:hunter2": true,
		"client.id": false, "ssl.ca.location": false, "linger.ms": false, "bootstrap.servers": false,
	} {
		if got := IsSecret(s); got != want {
			t.Errorf("IsSecret(%q) = %v, want %v", s, got, want)
		}
	}
}
