/* A minimal WASI command: prints "hello, <args>" (arguments joined by spaces), or "hello, world". */
#include <stdio.h>

int main(int argc, char **argv) {
  fputs("hello, ", stdout);
  if (argc < 2) fputs("world", stdout);
  for (int i = 1; i < argc; i++) {
    if (i > 1) putchar(' ');
    fputs(argv[i], stdout);
  }
  putchar('\n');
  return 0;
}
