#include "greet.h"

#include <stdio.h>

int greet(char *buf, size_t n, const char *who) {
  return snprintf(buf, n, "hello, %s, from libgreet %s", who, GREET_VERSION);
}
