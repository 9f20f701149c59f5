// Package supervisor keeps a set of services running: one restart loop per
// service, with exponential backoff, jitter and a failure count that decays
// after a healthy run, so that one crash-looping service never delays the
// others. The first failure in a row restarts at once (a service that ran
// for the healthy period, Spec.HealthyAfter, starts its count over); the
// backoff starts at the second. It knows nothing about containers: a service is anything with a
// Serve method.
//
// A Supervisor is not a lifetime group: the daemon's lifetime is held by an
// oklog/run group in package daemon. Supervisor.Run returns when its context
// is cancelled and every service has stopped, or when a service fails with
// ErrDoNotRestart.
//
// It imports no mrtd package; only pool imports it.
package supervisor
