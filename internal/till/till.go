// Package till drives a running kioskd as a shop and its shopper do: the
// till's API (firmware/ecr) creates a payment, the shopper inserts the
// simulated card and types the CAN through the screen's API, and the
// simulated camera shows the card holder. The chaos and soak runs use it.
package till

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Client talks to one kioskd's screen API (HTTP) and till API (ECR).
type Client struct {
	HTTP, ECR string // host:port of [http] listen and [ecr] listen
	TokenFile string // [ecr] token_file, written by kioskd
	// Watch is called as each payment starts; the check it returns is
	// asked at every poll and wins over any other error, so a payment
	// cut short by a kioskd restart or exit says so. Nil: never.
	Watch func() func() error
	// Gone, when set, tells WaitReady that kioskd is gone for good (it
	// exited and nothing restarts it). A restart is not gone.
	Gone func() error
	// Ready lists the health components that must be "ok" before a
	// payment starts (besides an idle session and the ECR token).
	Ready []string
	HC    http.Client
}

// Payment is the till's view of a payment (firmware/ecr).
type Payment struct {
	ID      string `json:"id"`
	Status  string `json:"status"` // pending, approved, declined
	State   string `json:"state"`
	Reasons []struct {
		Code string `json:"code"`
	} `json:"reasons"`
}

// Decided reports whether kioskd approved or declined the payment.
func (p Payment) Decided() bool { return p.Status == "approved" || p.Status == "declined" }

// ReasonCodes joins the decline (or offline) reason codes.
func (p Payment) ReasonCodes() string {
	var c []string
	for _, r := range p.Reasons {
		c = append(c, r.Code)
	}
	return strings.Join(c, ",")
}

type sessionStatus struct {
	State string `json:"state"`
}

type health struct {
	Components map[string]struct {
		State string `json:"state"`
	} `json:"components"`
}

const poll = 25 * time.Millisecond

func (c *Client) watch() func() error {
	if c.Watch == nil {
		return func() error { return nil }
	}
	return c.Watch()
}

// WaitReady waits until a payment can start: the session idle, the Ready
// components ok, the ECR token written. kioskd may restart meanwhile.
func (c *Client) WaitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if c.Gone != nil {
			if err := c.Gone(); err != nil {
				return err
			}
		}
		var s sessionStatus
		var h health
		if last = c.Get(ctx, "/api/session", &s); last == nil && s.State == "idle" {
			if last = c.Get(ctx, "/api/status", &h); last == nil {
				if last = notOK(h, c.Ready); last == nil {
					if _, last = os.Stat(c.TokenFile); last == nil {
						return nil
					}
				}
			}
		}
		if !Sleep(ctx, 4*poll) {
			return ctx.Err()
		}
	}
	if last == nil {
		last = errors.New("session not idle")
	}
	return last
}

func notOK(h health, need []string) error {
	for _, n := range need {
		if st := h.Components[n].State; st != "ok" {
			return fmt.Errorf("%s is %q", n, st)
		}
	}
	return nil
}

// WaitHealthy waits until the named health components are "ok".
func (c *Client) WaitHealthy(ctx context.Context, limit time.Duration, components ...string) error {
	deadline := time.Now().Add(limit)
	var last error = errors.New("no answer")
	for time.Now().Before(deadline) {
		var h health
		if last = c.Get(ctx, "/api/status", &h); last == nil {
			if last = notOK(h, components); last == nil {
				return nil
			}
		}
		if !Sleep(ctx, 4*poll) {
			return ctx.Err()
		}
	}
	return last
}

// Pay runs one payment of amountMinor CNY to its end (the card removed,
// the session idle again) and returns the till's view of it.
func (c *Client) Pay(ctx context.Context, ref string, amountMinor int64) (Payment, error) {
	var p Payment
	if err := c.WaitReady(ctx, 60*time.Second); err != nil {
		return p, fmt.Errorf("kioskd not ready: %w", err)
	}
	check := c.watch()
	step := func(err error) error {
		if cerr := check(); cerr != nil {
			return cerr
		}
		return err
	}
	body := fmt.Sprintf(`{"amount_minor":%d,"currency":"CNY","merchant_ref":%q}`, amountMinor, ref)
	if code, b, err := c.ECRDo(ctx, "POST", "/v1/payments", body); err != nil || code != http.StatusCreated {
		return p, step(fmt.Errorf("create payment: %d %s %v", code, b, err))
	}
	if err := c.waitState(ctx, check, 30*time.Second, "insert_card"); err != nil {
		return p, step(err)
	}
	if err := c.Post(ctx, "/api/sim/card", `{"action":"insert"}`); err != nil {
		return p, step(err)
	}
	if err := c.waitState(ctx, check, 30*time.Second, "enter_password"); err != nil {
		return p, step(err)
	}
	if err := c.Post(ctx, "/api/session/password", `{"kind":"can","digits":"123456"}`); err != nil {
		return p, step(err)
	}
	if err := c.waitState(ctx, check, 150*time.Second, "result", "remove_card", "idle"); err != nil {
		return p, step(err)
	}
	p, err := c.Lookup(ctx, ref)
	if rerr := c.Post(ctx, "/api/sim/card", `{"action":"remove"}`); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return p, step(err)
	}
	return p, step(c.waitState(ctx, check, 60*time.Second, "idle"))
}

// Lookup asks the till's API what became of a payment.
func (c *Client) Lookup(ctx context.Context, ref string) (Payment, error) {
	var p Payment
	code, b, err := c.ECRDo(ctx, "GET", "/v1/payments/"+ref, "")
	if err != nil {
		return p, err
	}
	if code != http.StatusOK {
		return p, fmt.Errorf("payment %s: %d %s", ref, code, b)
	}
	return p, json.Unmarshal(b, &p)
}

func (c *Client) waitState(ctx context.Context, check func() error, limit time.Duration, states ...string) error {
	deadline := time.Now().Add(limit)
	var s sessionStatus
	for time.Now().Before(deadline) {
		if err := check(); err != nil {
			return err
		}
		if err := c.Get(ctx, "/api/session", &s); err == nil {
			for _, want := range states {
				if s.State == want {
					return nil
				}
			}
		}
		if !Sleep(ctx, poll) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("session %q, waited %s for %s", s.State, limit, strings.Join(states, " or "))
}

// Get decodes the JSON answer of GET path on the screen's API.
func (c *Client) Get(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+c.HTTP+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.HC.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Post sends a JSON body to the screen's API.
func (c *Client) Post(ctx context.Context, path, body string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+c.HTTP+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HC.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// ECRDo is a call to the till's API with the token kioskd wrote.
func (c *Client) ECRDo(ctx context.Context, method, path, body string) (int, []byte, error) {
	token, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.ECR+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := c.HC.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Sleep waits d or until ctx ends; false when ctx ended.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
