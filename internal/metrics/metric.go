package metrics

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// value is a float64 updated atomically.
type value struct{ bits atomic.Uint64 }

func (v *value) load() float64 { return math.Float64frombits(v.bits.Load()) }

func (v *value) set(f float64) { v.bits.Store(math.Float64bits(f)) }

func (v *value) add(f float64) {
	for {
		old := v.bits.Load()
		if v.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+f)) {
			return
		}
	}
}

// Counter is a value that only goes up.
type Counter struct{ v value }

// Inc adds 1.
func (c *Counter) Inc() { c.v.add(1) }

// Add adds d, which must not be negative: a negative d panics.
func (c *Counter) Add(d float64) {
	if d < 0 {
		panic("metrics: a counter cannot decrease")
	}
	c.v.add(d)
}

// Value is the counter's value.
func (c *Counter) Value() float64 { return c.v.load() }

// Gauge is a value that goes up and down.
type Gauge struct{ v value }

// Set sets the gauge to f.
func (g *Gauge) Set(f float64) { g.v.set(f) }

// Add adds d, which may be negative.
func (g *Gauge) Add(d float64) { g.v.add(d) }

// Value is the gauge's value.
func (g *Gauge) Value() float64 { return g.v.load() }

// scalar is an unlabelled counter or gauge in a registry.
type scalar struct {
	name, help, typ string
	v               *value
}

func (s *scalar) collect(add func(family)) {
	add(family{name: s.name, help: s.help, typ: s.typ, samples: []sample{{value: s.v.load()}}})
}

// NewCounter registers and returns a counter without labels.
func (r *Registry) NewCounter(name, help string) *Counter {
	c := &Counter{}
	r.register(&scalar{name: name, help: help, typ: "counter", v: &c.v}, name)
	return c
}

// NewGauge registers and returns a gauge without labels.
func (r *Registry) NewGauge(name, help string) *Gauge {
	g := &Gauge{}
	r.register(&scalar{name: name, help: help, typ: "gauge", v: &g.v}, name)
	return g
}

// vec is a family of T, one per combination of label values.
type vec[T any] struct {
	name, help, typ string
	labels          []string // as given
	order           []int    // label indexes, sorted by label name
	get             func(*T) float64

	mu       sync.Mutex
	children map[string]*child[T]
}

type child[T any] struct {
	values []string
	m      T
}

func newVec[T any](name, help, typ string, labels []string, get func(*T) float64) *vec[T] {
	order := make([]int, len(labels))
	for i, l := range labels {
		if !validName(l, false) || strings.HasPrefix(l, "__") || slices.Contains(labels[:i], l) {
			panic(fmt.Sprintf("metrics: %s: invalid or repeated label name %q", name, l))
		}
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return labels[order[a]] < labels[order[b]] })
	return &vec[T]{name: name, help: help, typ: typ, labels: labels, order: order, get: get, children: map[string]*child[T]{}}
}

// key is an unambiguous map key for label values.
func key(values []string) string {
	var b []byte
	for _, v := range values {
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	return string(b)
}

func (v *vec[T]) with(values []string) *T {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("metrics: %s has labels %v, got %d values", v.name, v.labels, len(values)))
	}
	k := key(values)
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.children[k]
	if !ok {
		c = &child[T]{values: slices.Clone(values)}
		v.children[k] = c
	}
	return &c.m
}

func (v *vec[T]) delete(values []string) bool {
	if len(values) != len(v.labels) {
		return false
	}
	k := key(values)
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.children[k]
	delete(v.children, k)
	return ok
}

func (v *vec[T]) collect(add func(family)) {
	v.mu.Lock()
	samples := make([]sample, 0, len(v.children))
	for _, c := range v.children {
		labels := make([]labelPair, len(v.order))
		for i, j := range v.order {
			labels[i] = labelPair{v.labels[j], c.values[j]}
		}
		samples = append(samples, sample{labels: labels, value: v.get(&c.m)})
	}
	v.mu.Unlock()
	// By label values, in the order of the label names.
	slices.SortFunc(samples, func(a, b sample) int {
		for i := range a.labels {
			if c := strings.Compare(a.labels[i].value, b.labels[i].value); c != 0 {
				return c
			}
		}
		return 0
	})
	add(family{name: v.name, help: v.help, typ: v.typ, samples: samples})
}

// CounterVec is a counter per combination of label values.
type CounterVec struct{ v *vec[Counter] }

// NewCounterVec registers and returns a counter vector with the labels.
func (r *Registry) NewCounterVec(name, help string, labels ...string) *CounterVec {
	v := newVec(name, help, "counter", labels, (*Counter).Value)
	r.register(v, name)
	return &CounterVec{v}
}

// WithLabelValues returns the counter of these label values, in the order
// of the vector's labels, made at 0 on first use.
func (c *CounterVec) WithLabelValues(values ...string) *Counter { return c.v.with(values) }

// DeleteLabelValues removes the counter of these label values and reports
// whether there was one.
func (c *CounterVec) DeleteLabelValues(values ...string) bool { return c.v.delete(values) }

// GaugeVec is a gauge per combination of label values.
type GaugeVec struct{ v *vec[Gauge] }

// NewGaugeVec registers and returns a gauge vector with the labels.
func (r *Registry) NewGaugeVec(name, help string, labels ...string) *GaugeVec {
	v := newVec(name, help, "gauge", labels, (*Gauge).Value)
	r.register(v, name)
	return &GaugeVec{v}
}

// WithLabelValues returns the gauge of these label values, in the order
// of the vector's labels, made at 0 on first use.
func (g *GaugeVec) WithLabelValues(values ...string) *Gauge { return g.v.with(values) }

// DeleteLabelValues removes the gauge of these label values and reports
// whether there was one.
func (g *GaugeVec) DeleteLabelValues(values ...string) bool { return g.v.delete(values) }

// Histogram counts observations in buckets: cumulative _bucket{le=...}
// lines, +Inf last, then _sum and _count.
type Histogram struct {
	name, help string
	upper      []float64 // the buckets' upper bounds, +Inf last

	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative
	sum    float64
}

// NewHistogram registers and returns a histogram with these upper bounds,
// which must increase; a +Inf bucket is added when the last is not one.
func (r *Registry) NewHistogram(name, help string, buckets []float64) *Histogram {
	upper := slices.Clone(buckets)
	if len(upper) == 0 || !math.IsInf(upper[len(upper)-1], +1) {
		upper = append(upper, math.Inf(+1))
	}
	for i := 1; i < len(upper); i++ {
		if !(upper[i-1] < upper[i]) {
			panic(fmt.Sprintf("metrics: %s: buckets must increase, got %v", name, buckets))
		}
	}
	h := &Histogram{name: name, help: help, upper: upper, counts: make([]uint64, len(upper))}
	r.register(h, name)
	return h
}

// Observe counts v in the first bucket whose upper bound is at least v.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.upper, v) // NaN: len, counted in +Inf
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[min(i, len(h.counts)-1)]++
	h.sum += v
}

func (h *Histogram) collect(add func(family)) {
	h.mu.Lock()
	samples := make([]sample, 0, len(h.upper)+2)
	var n uint64
	for i, le := range h.upper {
		n += h.counts[i]
		samples = append(samples, sample{suffix: "_bucket", labels: []labelPair{{"le", string(appendFloat(nil, le))}}, value: float64(n)})
	}
	samples = append(samples, sample{suffix: "_sum", value: h.sum}, sample{suffix: "_count", value: float64(n)})
	h.mu.Unlock()
	add(family{name: h.name, help: h.help, typ: "histogram", samples: samples})
}

// ExponentialBuckets returns n upper bounds, the first start, each the
// one before times factor (client_golang's).
func ExponentialBuckets(start, factor float64, n int) []float64 {
	if n < 1 || start <= 0 || factor <= 1 {
		panic("metrics: ExponentialBuckets needs n >= 1, start > 0, factor > 1")
	}
	b := make([]float64, n)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}
