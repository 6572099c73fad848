// Package rpcerr maps Go errors to gRPC status codes in one place. RPC
// handlers return plain Go errors built here (or wrapping the sentinels
// below with %w); the server interceptors turn them into status errors
// with the sentinel's code and the error's message. Errors a handler got
// from another RPC keep their status; context errors become Canceled or
// DeadlineExceeded; anything else is Unknown, as gRPC itself does.
//
// The errors built by New and Errorf also carry their status
// (GRPCStatus), so a handler called directly, without a server (tests),
// answers with the same code.
package rpcerr

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The sentinels, one per status code handlers use. Match them with
// errors.Is.
var (
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrAborted            = errors.New("aborted")
	ErrResourceExhausted  = errors.New("resource exhausted")
	ErrInternal           = errors.New("internal error")
)

var codeOf = []struct {
	err  error
	code codes.Code
}{
	{ErrInvalidArgument, codes.InvalidArgument}, {ErrNotFound, codes.NotFound}, {ErrAlreadyExists, codes.AlreadyExists},
	{ErrFailedPrecondition, codes.FailedPrecondition}, {ErrUnavailable, codes.Unavailable}, {ErrAborted, codes.Aborted},
	{ErrResourceExhausted, codes.ResourceExhausted}, {ErrInternal, codes.Internal},
}

// kindError is an error of a kind (a sentinel) whose message is msg alone.
type kindError struct {
	kind error
	msg  string
	wrap error
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Is(target error) bool { return target == e.kind }

func (e *kindError) Unwrap() error { return e.wrap }

// GRPCStatus makes the error its own status for gRPC and status.Code.
func (e *kindError) GRPCStatus() *status.Status { return status.New(Code(e), e.msg) }

// New returns an error of kind (one of the sentinels) with message msg.
func New(kind error, msg string) error { return &kindError{kind: kind, msg: msg} }

// Errorf returns an error of kind with a formatted message; a %w in it
// is unwrapped as usual.
func Errorf(kind error, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &kindError{kind: kind, msg: err.Error(), wrap: errors.Unwrap(err)}
}

// Code is the status code of err: its sentinel's, its own status's, or
// that of a context error; Unknown otherwise (OK for nil).
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	for _, c := range codeOf {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Code()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Unknown
}

// ToStatus converts err to a status error (nil stays nil). An error that
// already is a status error is returned as it is.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		if _, isKind := err.(*kindError); !isKind {
			return err // a status from elsewhere (another RPC, gRPC itself)
		}
	}
	return status.Error(Code(err), err.Error())
}

// UnaryServerInterceptor maps the errors of unary handlers.
func UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		return resp, ToStatus(err)
	}
}

// StreamServerInterceptor maps the errors of streaming handlers.
func StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return ToStatus(handler(srv, ss))
	}
}

// ServerOptions install both interceptors.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(UnaryServerInterceptor()), grpc.ChainStreamInterceptor(StreamServerInterceptor())}
}
