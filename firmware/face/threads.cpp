// gocv v0.31 has no binding for cv::setNumThreads; this shim is the whole of it.
#include <opencv2/core.hpp>
#include "threads.h"

void kiosk_face_set_num_threads(int n) { cv::setNumThreads(n); }
int kiosk_face_get_num_threads(void) { return cv::getNumThreads(); }
