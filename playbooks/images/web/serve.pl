# serve.pl: answers every HTTP request on $PORT (default 8080) with
# /srv/index.html, this container's hostname and $VERSION. With FILES set (a
# list of paths, separated by spaces), it also says how many bytes each has, so
# a test can see that a secret or config is mounted without reading it out.
# Only modules of perl-base: it runs on the smallest base image.
use strict;
use warnings;
use IO::Socket::INET;

my $port = $ENV{PORT} || 8080;
my $server = IO::Socket::INET->new(LocalPort => $port, Listen => 16, ReuseAddr => 1, Proto => 'tcp')
    or die "listen on $port: $!\n";
$SIG{PIPE} = 'IGNORE';
open(my $hn, '<', '/etc/hostname');
my $host = $hn ? <$hn> : 'unknown';
chomp $host;
print "serving on $port as $host, version ", ($ENV{VERSION} || '?'), "\n";
$| = 1;
while (my $c = $server->accept) {
    my $req = <$c> // '';
    while (my $line = <$c>) { last if $line =~ /^\r?\n$/ }
    my $body = '';
    if (open(my $f, '<', '/srv/index.html')) { local $/; $body = <$f> }
    $body .= "host $host version " . ($ENV{VERSION} || '?') . "\n";
    for my $p (split ' ', $ENV{FILES} || '') {
        $body .= "$p: " . (-r $p ? (-s $p) . " bytes" : "missing") . "\n";
    }
    print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    close $c;
}
