package main

import "errors"

// errInterrupted: kioskd was restarted (killed) during the payment.
var errInterrupted = errors.New("kioskd restarted during the payment")
