package session

import "context"

// Prechecker is an optional Authorizer method: before the shopper is asked
// for anything, it says whether the request can be authorized at all (for
// example over the offline floor limit while the hub is unreachable), so
// nobody is sent through the card and camera steps for a certain decline.
type Prechecker interface {
	Precheck(ctx context.Context, req Request) (ok bool, reason string)
}
