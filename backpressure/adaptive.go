package backpressure

import "math"

const (
	defaultUtilization = 0.95
	defaultMinRate     = 1.0

	// forget is the weight a batch keeps in the cost fit per newer batch: the last three or so
	// batches matter, enough to average noise, few enough to follow a plant that drifts.
	forget = 0.7
	// minSpread is how far apart, relative to their mean, batch sizes must be before a line
	// through them can say anything about the fixed cost.
	minSpread = 0.2
	// noiseMargin is how many times the usual miss a signal must exceed to count: the time a
	// fitted slope puts between batch sizes, or a prediction miss taken as a change of the plant.
	noiseMargin = 3
	// changeTolerance is the smallest prediction miss, relative to the prediction, taken as a
	// change of the plant (a slower transform, a broker failover) even on a steady plant.
	changeTolerance = 0.25
	// drainBatches spreads a backlog over about this many batches, so one slow batch does not
	// starve the next ones.
	drainBatches = 5
	// minDrainShare is the least share of the capacity read while draining. The loop does not
	// wait for the clock while it is late, so reading less does not work the backlog off any
	// sooner: it only moves records from the schedule into the Kafka lag and pays the fixed cost
	// for fewer records.
	minDrainShare = 0.25
	// nearFull is the batch time, relative to the interval, above which the capacity hardly
	// depends on the fixed cost.
	nearFull = 0.8
	// maxStep bounds a rate to this multiple of the throughput the last batch demonstrated: the
	// model is a straight line, and a plant that is not (garbage collection, a larger transaction
	// committing slower) has to show it at twice the size before it is trusted at ten times.
	maxStep = 2.0
	// probeStep is how much larger a batch is asked to be when batches at the partitions' floors take
	// longer than the interval: enough spread to tell a fixed cost that fills the interval.
	probeStep = 2.0
)

// Adaptive is the default Estimator. It fits the time of a batch as a fixed cost plus a cost per
// record and asks for Utilization of the rate at which a batch takes exactly the interval, less
// what drains a backlog; the package documentation gives the law and the reasons.
//
// The zero value is ready to use.
type Adaptive struct {
	// Utilization is the fraction of the estimated sustainable rate to ask for; the rest absorbs
	// noise. Zero means 0.95.
	Utilization float64
	// MinRate is the lowest total rate, in records/s, so that batches keep carrying records to
	// learn from. Zero means 1; the per-partition floor of Limits usually lies above it.
	MinRate float64

	fit        costFit
	fixed      float64 // the last measured fixed cost, seconds per batch
	identified bool    // fixed was measured since the plant last changed
	modelled   bool    // overhead and perRecord hold the model in use
	overhead   float64 // seconds per batch
	perRecord  float64 // seconds per record
	noise      float64 // mean squared relative miss of the model's predictions
	asked      float64 // records the last rate asked for in a batch, 0 after a probe or the cap
}

// Update implements Estimator. Unlike SparkPID it answers from the first batch.
func (a *Adaptive) Update(b BatchStats) (float64, bool) {
	if b.Records <= 0 || b.Processing <= 0 || b.Interval <= 0 {
		return 0, false
	}
	n, p, interval := float64(b.Records), b.Processing.Seconds(), b.Interval.Seconds()

	// A miss proves a change only where the model had evidence: near the batch sizes it was fit
	// on, or once it has measured the fixed cost. Far from a guessed model a miss is the guess
	// being wrong, and the new batch is exactly what measures the fixed cost.
	if a.modelled {
		meanN, _ := a.fit.mean()
		if a.identified || math.Abs(n-meanN) <= minSpread*meanN {
			predicted := a.overhead + a.perRecord*n
			miss := (p - predicted) / predicted
			if math.Abs(miss) > max(changeTolerance, noiseMargin*math.Sqrt(a.noise)) {
				a.fit = costFit{}
				a.identified = false
			} else {
				a.noise = forget*a.noise + (1-forget)*miss*miss
			}
		}
	}
	a.fit.add(n, p)
	meanN, meanP := a.fit.mean()
	if fixed, ok := a.fit.intercept(math.Sqrt(a.noise)); ok {
		a.fixed, a.identified = fixed, true
	} else if meanP >= interval && a.fit.flat() {
		// Batches of different sizes take about the same time, and that time is the interval or more:
		// the fixed cost alone fills the interval. Shrinking the batch would only lower the throughput.
		a.fixed, a.identified = meanP, true
	}
	overran := p >= interval
	floored := a.asked > 0 && a.asked < (1-minSpread)*n
	a.asked = 0

	// The line goes through the recent batches. A fixed cost carried over a change is a guess.
	// Near a full batch the capacity hardly depends on it; shrinking after a slow batch it errs
	// on the safe side and is usually right (a slower transform leaves the commit as it was), so
	// one batch re-measures the cost per record. Growing far beyond a fast batch, a guess too
	// high would overshoot: there the model assumes no fixed cost until two sizes measure it.
	utilization := a.Utilization
	if utilization <= 0 || utilization > 1 {
		utilization = defaultUtilization
	}
	minRate := a.MinRate
	if minRate <= 0 {
		minRate = defaultMinRate
	}
	if a.identified && a.fixed >= utilization*interval {
		// No rate meets the interval: a batch yields the more records per second the larger it is,
		// n/(c0 + c1*n), so the answer is the largest batch the loop takes (Spark's loop would just
		// run late). The model keeps the measured fixed cost, so that a batch that is then much
		// faster shows the fixed cost fell.
		a.overhead = min(a.fixed, meanP)
		a.perRecord = max(meanP-a.overhead, 0) / meanN
		a.modelled = true
		if b.MaxRecords > 0 {
			return max(float64(b.MaxRecords)/interval, minRate), true
		}
		return max(maxStep*n/interval, minRate), true
	}
	if overran && floored && !a.identified {
		// The batch overran the interval, and the per-partition floors kept it from shrinking as asked:
		// batches of one size cannot tell a fixed cost from a cost per record, and shrinking cannot
		// spread them. A larger one can: if it takes no longer, the fixed cost fills the interval.
		return max(probeStep*n/interval, minRate), true
	}
	a.overhead = a.fixed
	if !a.identified && (meanP < nearFull*interval || a.overhead >= utilization*interval) || a.overhead >= meanP {
		// A fixed cost carried over a change that is not confirmed yet is a guess; one at least as long
		// as the interval would leave no capacity at all, so assume none until two sizes measure it.
		a.overhead = 0
	}
	a.perRecord = (meanP - a.overhead) / meanN
	a.modelled = true

	capacity := (interval - a.overhead) / a.perRecord // records a batch of one interval holds
	// The next batch starts this much behind its schedule.
	late := max(0, b.SchedulingDelay.Seconds()+p-interval)
	records := max(minDrainShare*capacity, min(utilization*capacity, capacity-late/drainBatches/a.perRecord))
	rate := max(min(records/interval, maxStep*n/p), minRate)
	a.asked = rate * interval
	return rate, true
}

// Overhead is the fixed cost of a batch, in seconds, in the model in use.
func (a *Adaptive) Overhead() float64 { return a.overhead }

// PerRecord is the cost of a record, in seconds, in the model in use.
func (a *Adaptive) PerRecord() float64 { return a.perRecord }

// costFit is an exponentially weighted least-squares fit of batch time against batch size.
type costFit struct{ w, n, p, nn, np float64 }

func (f *costFit) add(n, p float64) {
	f.w = forget*f.w + 1
	f.n = forget*f.n + n
	f.p = forget*f.p + p
	f.nn = forget*f.nn + n*n
	f.np = forget*f.np + n*p
}

func (f *costFit) mean() (n, p float64) { return f.n / f.w, f.p / f.w }

// slope is the fitted cost per record and the variance of the batch sizes, once the sizes are spread enough
// to tell anything (ok).
func (f *costFit) slope() (slope, variance float64, ok bool) {
	meanN, meanP := f.mean()
	variance = f.nn/f.w - meanN*meanN
	if variance < minSpread*minSpread*meanN*meanN {
		return 0, 0, false
	}
	return (f.np/f.w - meanN*meanP) / variance, variance, true
}

// flat reports whether the batch sizes are spread enough to tell, and the time does not grow with the size
// by more than half the change tolerance across that spread: a cost that is all fixed. Noise does not widen
// the tolerance: noisy batch times are a reason to conclude nothing, not to conclude the cost is fixed (which
// sends the batch to its cap). On a busy machine, a cost of 100 us per record measured over batches of 3,300 to
// 5,500 records once passed for flat when the tolerance grew with the noise.
func (f *costFit) flat() bool {
	_, meanP := f.mean()
	slope, variance, ok := f.slope()
	return ok && slope*math.Sqrt(variance) < changeTolerance/2*meanP
}

// intercept is the fixed cost of the fitted line when it means something: the batch sizes are
// spread, and the time the slope puts between them stands out of the noise (the usual relative
// miss). A negative intercept (a cost growing faster than linearly) is taken as zero, the least a
// batch can cost; maxStep keeps such a plant from being extrapolated far.
func (f *costFit) intercept(noise float64) (float64, bool) {
	meanN, meanP := f.mean()
	slope, variance, ok := f.slope()
	if !ok || slope <= 0 || slope*math.Sqrt(variance) < noiseMargin*noise*meanP {
		return 0, false
	}
	return max(0, meanP-slope*meanN), true
}
