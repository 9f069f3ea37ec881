package face

/*
#cgo !windows pkg-config: opencv4
#cgo CXXFLAGS: --std=c++11
#include "threads.h"
*/
import "C"

// setOpenCVThreads sets OpenCV's worker thread count. It is process-wide in
// OpenCV, so LoadModels only calls it when Options.Threads asks.
func setOpenCVThreads(n int) { C.kiosk_face_set_num_threads(C.int(n)) }

// openCVThreads reports OpenCV's current worker thread count.
func openCVThreads() int { return int(C.kiosk_face_get_num_threads()) }
