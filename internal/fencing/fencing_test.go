package fencing

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestCheck(t *testing.T) {
	in := func(token string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(Header, token))
	}
	if err := Check(in("jm-a"), "jm-a"); err != nil {
		t.Fatalf("the registered JobManager: %v", err)
	}
	if err := Check(context.Background(), "jm-a"); err != nil {
		t.Fatalf("a call without a token: %v", err)
	}
	err := Check(in("jm-old"), "jm-a")
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("a stale JobManager: %v, want FailedPrecondition", err)
	}
	if err := Check(in("jm-b"), ""); err != nil {
		t.Fatalf("a TaskManager that is registering refused a call: %v", err)
	}
}
