package backpressure

import (
	"sync"
	"testing"
	"time"
)

func TestZeroConfigLeavesBudgetsUnlimited(t *testing.T) {
	for name, c := range map[string]*Controller{"NewController(Config{})": NewController(Config{}), "Controller{}": {}} {
		c.Observe(batch(time.Second, 1000, 100*time.Millisecond, 0))
		budgets := c.Budgets(lagsOf(5, 0), time.Second)
		if len(budgets) != 2 || budgets[Partition{"in", 0}] != Unlimited || budgets[Partition{"in", 1}] != Unlimited {
			t.Errorf("%s: Budgets = %v, want Unlimited for both partitions", name, budgets)
		}
		if c.Rate() != 0 {
			t.Errorf("%s: Rate = %v, want 0 when disabled", name, c.Rate())
		}
	}
}

func TestInitialRateAppliesBeforeTheFirstEstimate(t *testing.T) {
	c := NewController(Config{Enabled: true, InitialRate: 1000})
	if got := c.Rate(); got != 1000 {
		t.Errorf("Rate = %v, want 1000", got)
	}
	budgets := c.Budgets(lagsOf(backlog, 3*backlog), 2*time.Second)
	if got := budgets[Partition{"in", 0}]; got != 500 {
		t.Errorf("budget of partition 0 = %d, want 500 (a quarter of 1000/s for 2s)", got)
	}
	if got := budgets[Partition{"in", 1}]; got != 1500 {
		t.Errorf("budget of partition 1 = %d, want 1500", got)
	}
}

func TestWithoutAnInitialRateTheFirstBatchIsUnlimited(t *testing.T) {
	c := NewController(Config{Enabled: true})
	budgets := c.Budgets(lagsOf(backlog, backlog, backlog), time.Second)
	for p, b := range budgets {
		if b != Unlimited {
			t.Errorf("budget of %v before any estimate = %d, want Unlimited: a backlog must not be throttled unmeasured", p, b)
		}
	}
	if len(budgets) != 3 {
		t.Errorf("budgets for %d partitions, want 3", len(budgets))
	}
	c.Observe(batch(time.Second, 1000, 100*time.Millisecond, 0))
	if c.Rate() == 0 {
		t.Error("no rate after the first batch was measured")
	}
	for p, b := range c.Budgets(lagsOf(backlog, backlog, backlog), time.Second) {
		if b == Unlimited {
			t.Errorf("budget of %v still Unlimited after an estimate", p)
		}
	}
}

func TestObserveReplacesTheInitialRate(t *testing.T) {
	c := NewController(Config{Enabled: true, InitialRate: 1000, Estimator: NewSparkPID()})
	c.Observe(batch(1*time.Second, 1000, 100*time.Millisecond, 0)) // seeds Spark: no estimate yet
	if got := c.Rate(); got != 1000 {
		t.Errorf("Rate after the seed batch = %v, want the initial 1000", got)
	}
	if got := c.ProcessingRate(); got != 10000 {
		t.Errorf("ProcessingRate = %v, want 10000", got)
	}
	c.Observe(batch(2*time.Second, 1000, 200*time.Millisecond, 0))
	if got := c.Rate(); got != 5000 {
		t.Errorf("Rate = %v, want 5000", got)
	}
	if got := c.Budgets(lagsOf(backlog), time.Second)[Partition{"in", 0}]; got != 5000 {
		t.Errorf("budget = %d, want 5000", got)
	}
}

func TestPartitionsShareWhatTheRateAllowsBeyondTheirLags(t *testing.T) {
	c := NewController(Config{Enabled: true, InitialRate: 1000})
	tests := []struct {
		name string
		lags []int64
		want []int64
	}{
		// A partition caught up at the start of the batch still gets records arriving during it: the 900 the
		// rate allows beyond the lags are shared equally.
		{"one caught up", []int64{0, 100}, []int64{450, 550}},
		{"all caught up", []int64{0, 0}, []int64{500, 500}},
		// Lags beyond what the rate allows: in proportion to them, as before.
		{"backlog", []int64{500, 1500}, []int64{250, 750}},
	}
	for _, tt := range tests {
		budgets := c.Budgets(lagsOf(tt.lags...), time.Second)
		for i, w := range tt.want {
			if got := budgets[Partition{"in", int32(i)}]; got != w {
				t.Errorf("%s: budget of partition %d = %d, want %d (all: %v)", tt.name, i, got, w, budgets)
			}
		}
	}
}

func TestFloorsAndCapsApplyToBudgets(t *testing.T) {
	c := NewController(Config{Enabled: true, InitialRate: 1000, MinRatePerPartition: 40, MaxRatePerPartition: 50})
	budgets := c.Budgets(lagsOf(1, backlog, 0), time.Second)
	// The backlogged partition is capped, what it cannot take goes to the partition with a lag of
	// one (up to its cap too), and the idle partition gets its floor.
	want := []int64{50, 50, 40}
	for i, w := range want {
		if got := budgets[Partition{"in", int32(i)}]; got != w {
			t.Errorf("budget of partition %d = %d, want %d (all: %v)", i, got, w, budgets)
		}
	}
}

func TestMetricsReadConcurrentlyWithTheLoop(t *testing.T) {
	c := NewController(Config{Enabled: true, InitialRate: 1000})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 1000 {
			_ = c.Rate() + c.ProcessingRate()
		}
	}()
	for i := range 1000 {
		c.Budgets(lagsOf(backlog, backlog), time.Second)
		c.Observe(batch(time.Duration(i+1)*time.Second, 1000, 100*time.Millisecond, 0))
	}
	wg.Wait()
}
