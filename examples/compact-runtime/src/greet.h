/* libgreet: the "library" of the example, standing in for MetaCall's libmetacall. */
#ifndef GREET_H
#define GREET_H
#include <stddef.h>

#define GREET_VERSION "1.0.0"

/* Writes the greeting for `who` into buf (at most n bytes, NUL-terminated); returns its length. */
int greet(char *buf, size_t n, const char *who);

#endif
