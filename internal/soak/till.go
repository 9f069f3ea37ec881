package main

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

	"kiosk/firmware/diagnostics"
)

// till drives kioskd as a shop and a shopper do: the till's API (ECR)
// creates the payment, the shopper inserts the card and types the CAN on
// the screen's API, the simulated camera shows the card holder.
type till struct {
	k      *kiosk
	client http.Client
}

// payment is the till's view of a payment (firmware/ecr).
type payment struct {
	ID      string `json:"id"`
	Status  string `json:"status"` // pending, approved, declined
	Reasons []struct {
		Code string `json:"code"`
	} `json:"reasons"`
}

func (p payment) reasons() string {
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

// waitReady waits until a session can start: idle, camera and reader up,
// the ECR token written.
func (t *till) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if !t.k.alive() {
			return errors.New("kioskd exited")
		}
		var s sessionStatus
		var h health
		if last = t.get(ctx, "/api/session", &s); last == nil && s.State == "idle" {
			if last = t.get(ctx, "/api/status", &h); last == nil &&
				h.Components["camera"].State == "ok" && h.Components["cardreader"].State == "ok" && h.Components["face"].State == "ok" {
				if _, err := os.Stat(t.k.tokenFile); err == nil {
					return nil
				}
			}
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	if last == nil {
		last = errors.New("session not idle")
	}
	return last
}

// pay runs one payment to its end (the card removed, the session idle
// again) and returns the till's view of it.
func (t *till) pay(ctx context.Context, ref string) (payment, error) {
	var p payment
	if err := t.waitReady(ctx, 60*time.Second); err != nil {
		return p, fmt.Errorf("kioskd not ready: %w", err)
	}
	// ¥1.00: the embedded hub allows a terminal ¥5,000 a UTC day, which
	// ¥23.50 payments (the demo's) used up after 212 of them.
	body := fmt.Sprintf(`{"amount_minor":100,"currency":"CNY","merchant_ref":%q}`, ref)
	if code, b, err := t.ecr(ctx, "POST", "/v1/payments", body); err != nil || code != http.StatusCreated {
		return p, fmt.Errorf("create payment: %d %s %v", code, b, err)
	}
	if err := t.waitState(ctx, 30*time.Second, "insert_card"); err != nil {
		return p, err
	}
	if err := t.post(ctx, "/api/sim/card", `{"action":"insert"}`); err != nil {
		return p, err
	}
	if err := t.waitState(ctx, 30*time.Second, "enter_password"); err != nil {
		return p, err
	}
	if err := t.post(ctx, "/api/session/password", `{"kind":"can","digits":"123456"}`); err != nil {
		return p, err
	}
	if err := t.waitState(ctx, 150*time.Second, "result", "remove_card", "idle"); err != nil {
		return p, err
	}
	p, err := t.lookup(ctx, ref)
	if rerr := t.post(ctx, "/api/sim/card", `{"action":"remove"}`); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return p, err
	}
	return p, t.waitState(ctx, 60*time.Second, "idle")
}

// lookup asks the till's API what became of a payment.
func (t *till) lookup(ctx context.Context, ref string) (payment, error) {
	var p payment
	code, b, err := t.ecr(ctx, "GET", "/v1/payments/"+ref, "")
	if err != nil {
		return p, err
	}
	if code != http.StatusOK {
		return p, fmt.Errorf("payment %s: %d %s", ref, code, b)
	}
	return p, json.Unmarshal(b, &p)
}

// counters are kioskd's own soak counters (firmware/diagnostics).
func (t *till) counters(ctx context.Context) (diagnostics.Counters, error) {
	var c diagnostics.Counters
	return c, t.get(ctx, "/api/diagnostics/counters", &c)
}

func (t *till) waitState(ctx context.Context, limit time.Duration, states ...string) error {
	deadline := time.Now().Add(limit)
	var s sessionStatus
	for time.Now().Before(deadline) {
		if !t.k.alive() {
			return errors.New("kioskd exited")
		}
		if err := t.get(ctx, "/api/session", &s); err == nil {
			for _, want := range states {
				if s.State == want {
					return nil
				}
			}
		}
		if !sleep(ctx, 25*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("session %q, waited %s for %s", s.State, limit, strings.Join(states, " or "))
}

func (t *till) get(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+t.k.httpAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := t.client.Do(req)
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

func (t *till) post(ctx context.Context, path, body string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+t.k.httpAddr+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
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

// ecr is a call to the till's API with the token kioskd wrote.
func (t *till) ecr(ctx context.Context, method, path, body string) (int, []byte, error) {
	token, err := os.ReadFile(t.k.tokenFile)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+t.k.ecrAddr+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
