// Package metrics is a small Prometheus client: counters, gauges, their
// labelled vectors and histograms, kept in a Registry that serves them in
// the text exposition format, version 0.0.4, families sorted by name and
// samples by their label values. RegisterRuntime adds mrtd's own process
// and Go runtime figures, under client_golang's names, read at scrape time.
//
// It replaces client_golang so that no metrics code runs when mrtd starts
// (mrtd run links the daemon): the package has no package-level variables
// that need initialising and no init functions, and nothing is computed
// before a Registry is made or scraped.
//
// It imports no package of mrtd.
package metrics
