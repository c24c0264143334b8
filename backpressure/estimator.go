package backpressure

import "time"

// BatchStats is what the loop reports after every committed batch.
type BatchStats struct {
	Time            time.Time     // when the batch completed (its transaction committed)
	Records         int64         // records in the batch, all partitions together
	Processing      time.Duration // from the start of the batch to its commit
	SchedulingDelay time.Duration // how late the batch started after its scheduled time
	Interval        time.Duration // the batch interval the batch was scheduled with
	MaxRecords      int64         // the most records the loop takes in one batch, 0 if unknown
}

// Estimator turns the history of batches into the total rate, in records per second, the processor
// instance should read at. ok is false when a batch teaches it nothing new (an empty batch, a seed
// batch); the caller then keeps the previous rate.
type Estimator interface {
	Update(b BatchStats) (rate float64, ok bool)
}

// SparkPID is Spark Streaming's PIDRateEstimator (spark.streaming.backpressure.pid.*), kept as the
// reference our own controller is measured against. Its error is the gap between the rate it last
// asked for and the rate the batch was processed at, and its integral is the scheduling delay
// converted into records that overflowed. With kp = 1 the law reduces to "read at the last batch's
// processing rate, less a fifth of the backlog per interval": a batch's fixed cost makes small
// batches look slow, so it approaches the sustainable rate only geometrically, and it sees a
// backlog only once a batch has started late, one batch after the batch that caused it.
//
// Use NewSparkPID for Spark's defaults; the zero value has all gains zero and never moves.
type SparkPID struct {
	Proportional float64 // kp, spark.streaming.backpressure.pid.proportional
	Integral     float64 // ki, spark.streaming.backpressure.pid.integral
	Derivative   float64 // kd, spark.streaming.backpressure.pid.derived
	MinRate      float64 // records/s, spark.streaming.backpressure.pid.minRate

	seeded      bool
	latestTime  time.Time
	latestRate  float64
	latestError float64
}

// NewSparkPID returns a SparkPID with Spark's defaults: kp 1.0, ki 0.2, kd 0.0, min rate 100/s.
func NewSparkPID() *SparkPID {
	return &SparkPID{Proportional: 1, Integral: 0.2, Derivative: 0, MinRate: 100}
}

// Update implements Estimator with Spark's semantics: batches without records, without processing
// time or not later than the previous one are ignored, and the first batch only seeds the rate with
// its processing rate.
func (s *SparkPID) Update(b BatchStats) (float64, bool) {
	if b.Records <= 0 || b.Processing <= 0 || b.Interval <= 0 {
		return 0, false
	}
	if s.seeded && !b.Time.After(s.latestTime) {
		return 0, false
	}
	processingRate := float64(b.Records) / b.Processing.Seconds()
	err := s.latestRate - processingRate
	historicalErr := b.SchedulingDelay.Seconds() * processingRate / b.Interval.Seconds()
	dErr := (err - s.latestError) / b.Time.Sub(s.latestTime).Seconds()
	s.latestTime = b.Time
	if !s.seeded {
		s.seeded = true
		s.latestRate = processingRate
		s.latestError = 0
		return 0, false
	}
	rate := max(s.MinRate, s.latestRate-s.Proportional*err-s.Integral*historicalErr-s.Derivative*dErr)
	s.latestRate = rate
	s.latestError = err
	return rate, true
}
