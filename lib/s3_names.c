/*
 * s3_names.c — S3 bucket-name rules (s3_names.h).
 */
#include "s3_names.h"

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int gfs_s3_bucket_valid(const char *b, size_t n, int path_style)
{
    if (n < 3 || n > 63 || !is_alnum(b[0]))
        return 0;
    if (path_style) {
        for (size_t i = 0; i < n; i++)
            if (!is_alnum(b[i]) && b[i] != '.' && b[i] != '-' && b[i] != '_')
                return 0;
        return 1;
    }
    if (!is_alnum(b[n - 1]))
        return 0;
    int all_ip = 1, dots = 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '.' || c == '-'))
            return 0;
        if (c == '.' && i > 0 && b[i - 1] == '.')
            return 0;
        if (c == '.')
            dots++;
        else if (!is_digit(c))
            all_ip = 0;
    }
    return !(all_ip && dots == 3); /* not formatted like an IPv4 address */
}
