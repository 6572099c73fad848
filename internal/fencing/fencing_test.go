package fencing

import (
	"context"
	"strconv"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestCheck(t *testing.T) {
	in := func(id string, epoch uint64) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(Header, id, EpochHeader, strconv.FormatUint(epoch, 10)))
	}
	jmA := Token{ID: "jm-a", Epoch: 3}
	for _, tc := range []struct {
		name       string
		ctx        context.Context
		registered Token
		highest    uint64
		want       uint64
		refused    bool
	}{
		{"the registered JobManager", in("jm-a", 3), jmA, 3, 3, false},
		{"a call without a token", context.Background(), jmA, 3, 3, false},
		{"another JobManager of the same epoch", in("jm-old", 3), jmA, 3, 3, true},
		{"a deposed leader", in("jm-old", 2), jmA, 3, 3, true},
		{"a deposed leader with the registered id", in("jm-a", 2), jmA, 3, 3, true},
		{"a new leader before registering with it", in("jm-b", 4), jmA, 3, 4, false},
		{"registering: any JobManager of the epoch", in("jm-b", 3), Token{}, 3, 3, false},
		{"registering: an older epoch", in("jm-b", 1), Token{}, 3, 3, true},
		{"JobManagers without election", in("jm-a", 0), Token{ID: "jm-a"}, 0, 0, false},
		{"another JobManager without election", in("jm-b", 0), Token{ID: "jm-a"}, 0, 0, true},
	} {
		got, err := Check(tc.ctx, tc.registered, tc.highest)
		if tc.refused != (err != nil) || got != tc.want {
			t.Errorf("%s: epoch %d, err %v; want epoch %d, refused %v", tc.name, got, err, tc.want, tc.refused)
		}
		if err != nil && status.Code(err) != codes.FailedPrecondition {
			t.Errorf("%s: code %v, want FailedPrecondition", tc.name, status.Code(err))
		}
	}
	bad := metadata.NewIncomingContext(context.Background(), metadata.Pairs(Header, "jm-a", EpochHeader, "x"))
	if _, err := Check(bad, jmA, 3); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("an epoch that is no number: %v", err)
	}
}
