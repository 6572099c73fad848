// Package datadir guards a daemon's data directory against a second process.
//
// Lock takes an exclusive flock(2) on DIR/flow.lock and writes the holder's
// pid into that file. A second Lock on the same directory, from another
// process or from the same one, fails at once with an *InUseError naming the
// holder's pid (errors.Is(err, ErrInUse)). The kernel drops the lock when
// its holder exits, however it exits: a SIGKILLed daemon never blocks its
// restart, and the lock file left behind means nothing by itself.
//
// On systems without flock (not Linux or a BSD), Lock only writes the pid
// file and does not exclude anything.
package datadir
