#include <stdio.h>
#include <stdlib.h>

static int *squares;
static int count;
static char greeting[64];
static int runs;

__attribute__((export_name("wizer.initialize"))) void init(void) {
    count = 1000;
    squares = malloc(count * sizeof(int));
    for (int i = 0; i < count; i++) squares[i] = i * i;
    const char *lang = getenv("LANG");
    snprintf(greeting, sizeof greeting, "hello, %s", lang ? lang : "nobody");
    printf("initialised %d squares\n", count);
    fflush(stdout);
}

int main(void) {
    long sum = 0;
    if (squares) for (int i = 0; i < count; i++) sum += squares[i];
    runs++;
    printf("%s: sum %ld, run %d\n", greeting, sum, runs);
    return 0;
}
