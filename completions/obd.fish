# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_obd_global_optspecs
    string join \n json format= q/quiet h/help V/version
end

function __fish_obd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_obd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_obd_using_subcommand
    set -l cmd (__fish_obd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c obd -n "__fish_obd_needs_command" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_needs_command" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_needs_command" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_needs_command" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_needs_command" -f -a "inspect" -d 'Show headers, trailers, indexes and containers of layer blobs, or a stack\'s merged view'
complete -c obd -n "__fish_obd_needs_command" -f -a "map" -d 'Show where each extent of a stack\'s virtual disk comes from (like `qemu-img map`)'
complete -c obd -n "__fish_obd_needs_command" -f -a "flatten" -d 'Write a stack\'s merged virtual disk as a raw image (sparse where possible)'
complete -c obd -n "__fish_obd_needs_command" -f -a "demo" -d 'Build a small sample stack in a temporary directory, then inspect, map and flatten it'
complete -c obd -n "__fish_obd_needs_command" -f -a "attach" -d 'Serve a stack as a ublk block device (/dev/ublkbN); returns once it is live'
complete -c obd -n "__fish_obd_needs_command" -f -a "serve" -d 'Serve a stack as an NBD export (for QEMU, qemu-img, nbd-client); returns once it is live'
complete -c obd -n "__fish_obd_needs_command" -f -a "detach" -d 'Stop an attached device or an NBD export (--force: remove one whose server died)'
complete -c obd -n "__fish_obd_needs_command" -f -a "list" -d 'List attached ublk devices with their layers, server and state'
complete -c obd -n "__fish_obd_needs_command" -f -a "doctor" -d 'Check what attach needs: kernel, ublk_drv, /dev/ublk-control, features, io_uring (exit 1 on a failure)'
complete -c obd -n "__fish_obd_needs_command" -f -a "stats" -d 'Requests, bytes, errors and latencies of attached devices and exports'
complete -c obd -n "__fish_obd_needs_command" -f -a "create" -d 'Create an empty writable layer (data file + index file)'
complete -c obd -n "__fish_obd_needs_command" -f -a "commit" -d 'Seal a writable layer into a read-only layer, seal in place, or commit a raw image\'s difference'
complete -c obd -n "__fish_obd_needs_command" -f -a "merge" -d 'Flatten a stack of read-only layers into one read-only layer'
complete -c obd -n "__fish_obd_needs_command" -f -a "zfile" -d 'Compress or decompress ZFile containers'
complete -c obd -n "__fish_obd_needs_command" -f -a "verify" -d 'Check layer blobs (files or directories) for every corruption the formats can reveal'
complete -c obd -n "__fish_obd_needs_command" -f -a "push" -d 'Push layer files as an overlaybd image to a registry or an OCI layout'
complete -c obd -n "__fish_obd_needs_command" -f -a "pull" -d 'Pull an overlaybd image from a registry into an OCI layout directory'
complete -c obd -n "__fish_obd_needs_command" -f -a "cache" -d 'The local cache of registry blobs: list, verify, prune'
complete -c obd -n "__fish_obd_needs_command" -f -a "completions" -d 'Print the shell completion script of obd'
complete -c obd -n "__fish_obd_needs_command" -f -a "man" -d 'Print a manual page, or write them all into a directory'
complete -c obd -n "__fish_obd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c obd -n "__fish_obd_using_subcommand inspect" -l upper -d 'A writable layer (data file and index file) on top of the stack' -r -F
complete -c obd -n "__fish_obd_using_subcommand inspect" -l max-index-memory -d 'Memory all layer indexes together may take (e.g. 1G): a layer whose index claims more is refused before anything is allocated' -r
complete -c obd -n "__fish_obd_using_subcommand inspect" -l creds -d 'Credentials for the registry (default: the auth files podman and docker write; $REGISTRY_AUTH_FILE first). Never printed' -r
complete -c obd -n "__fish_obd_using_subcommand inspect" -l authfile -d 'Read credentials from this auth file (podman\'s auth.json or docker\'s config.json) instead of the default ones' -r -F
complete -c obd -n "__fish_obd_using_subcommand inspect" -l insecure-registry -d 'Speak plain HTTP to this registry (HOST or HOST:PORT; repeatable). Loopback registries always are' -r
complete -c obd -n "__fish_obd_using_subcommand inspect" -l cert-dir -d 'Also trust the CA certificates (*.crt, *.pem) in this directory' -r -F
complete -c obd -n "__fish_obd_using_subcommand inspect" -l max-requests -d 'Requests in flight per registry, 1 to 64' -r
complete -c obd -n "__fish_obd_using_subcommand inspect" -l request-timeout -d 'Give up on one request after this many seconds (it is retried a few times with back-off first)' -r
complete -c obd -n "__fish_obd_using_subcommand inspect" -l cache-dir -d 'The local blob cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand inspect" -l cache-limit -d 'Disk space the blob cache may take (e.g. 20G); least recently used blobs go first, never one in use' -r
complete -c obd -n "__fish_obd_using_subcommand inspect" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand inspect" -l index -d 'List every index segment (sectors: offset, length, moffset)'
complete -c obd -n "__fish_obd_using_subcommand inspect" -l stack -d 'Treat the files as one stack (bottom first) and show the merged view'
complete -c obd -n "__fish_obd_using_subcommand inspect" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand inspect" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand inspect" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand map" -l lba -d 'Show only the extent that holds this sector (512-byte LBA)' -r
complete -c obd -n "__fish_obd_using_subcommand map" -l start -d 'Map from this byte of the virtual disk (e.g. 1G; default 0)' -r
complete -c obd -n "__fish_obd_using_subcommand map" -l length -d 'Map this many bytes (e.g. 64M; default: to the end of the disk)' -r
complete -c obd -n "__fish_obd_using_subcommand map" -l upper -d 'A writable layer (data file and index file) on top of the stack' -r -F
complete -c obd -n "__fish_obd_using_subcommand map" -l max-index-memory -d 'Memory all layer indexes together may take (e.g. 1G): a layer whose index claims more is refused before anything is allocated' -r
complete -c obd -n "__fish_obd_using_subcommand map" -l creds -d 'Credentials for the registry (default: the auth files podman and docker write; $REGISTRY_AUTH_FILE first). Never printed' -r
complete -c obd -n "__fish_obd_using_subcommand map" -l authfile -d 'Read credentials from this auth file (podman\'s auth.json or docker\'s config.json) instead of the default ones' -r -F
complete -c obd -n "__fish_obd_using_subcommand map" -l insecure-registry -d 'Speak plain HTTP to this registry (HOST or HOST:PORT; repeatable). Loopback registries always are' -r
complete -c obd -n "__fish_obd_using_subcommand map" -l cert-dir -d 'Also trust the CA certificates (*.crt, *.pem) in this directory' -r -F
complete -c obd -n "__fish_obd_using_subcommand map" -l max-requests -d 'Requests in flight per registry, 1 to 64' -r
complete -c obd -n "__fish_obd_using_subcommand map" -l request-timeout -d 'Give up on one request after this many seconds (it is retried a few times with back-off first)' -r
complete -c obd -n "__fish_obd_using_subcommand map" -l cache-dir -d 'The local blob cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand map" -l cache-limit -d 'Disk space the blob cache may take (e.g. 20G); least recently used blobs go first, never one in use' -r
complete -c obd -n "__fish_obd_using_subcommand map" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand map" -l ignore-chain -d 'Accept a stack whose parent-uuid chain is broken (by default an error: layers out of order or one missing)'
complete -c obd -n "__fish_obd_using_subcommand map" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand map" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand map" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand map" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand flatten" -s o -l output -d 'Output raw image, or `-` for stdout' -r -F
complete -c obd -n "__fish_obd_using_subcommand flatten" -l upper -d 'A writable layer (data file and index file) on top of the stack' -r -F
complete -c obd -n "__fish_obd_using_subcommand flatten" -l cache-size -d 'Memory for decompressed ZFile blocks, shared by all layers (e.g. 64M; 0 turns the cache off)' -r
complete -c obd -n "__fish_obd_using_subcommand flatten" -l max-index-memory -d 'Memory all layer indexes together may take (e.g. 1G): a layer whose index claims more is refused before anything is allocated' -r
complete -c obd -n "__fish_obd_using_subcommand flatten" -l creds -d 'Credentials for the registry (default: the auth files podman and docker write; $REGISTRY_AUTH_FILE first). Never printed' -r
complete -c obd -n "__fish_obd_using_subcommand flatten" -l authfile -d 'Read credentials from this auth file (podman\'s auth.json or docker\'s config.json) instead of the default ones' -r -F
complete -c obd -n "__fish_obd_using_subcommand flatten" -l insecure-registry -d 'Speak plain HTTP to this registry (HOST or HOST:PORT; repeatable). Loopback registries always are' -r
complete -c obd -n "__fish_obd_using_subcommand flatten" -l cert-dir -d 'Also trust the CA certificates (*.crt, *.pem) in this directory' -r -F
complete -c obd -n "__fish_obd_using_subcommand flatten" -l max-requests -d 'Requests in flight per registry, 1 to 64' -r
complete -c obd -n "__fish_obd_using_subcommand flatten" -l request-timeout -d 'Give up on one request after this many seconds (it is retried a few times with back-off first)' -r
complete -c obd -n "__fish_obd_using_subcommand flatten" -l cache-dir -d 'The local blob cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand flatten" -l cache-limit -d 'Disk space the blob cache may take (e.g. 20G); least recently used blobs go first, never one in use' -r
complete -c obd -n "__fish_obd_using_subcommand flatten" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand flatten" -s f -l force -d 'Replace OUT if it exists'
complete -c obd -n "__fish_obd_using_subcommand flatten" -l ignore-chain -d 'Accept a stack whose parent-uuid chain is broken (by default an error: layers out of order or one missing)'
complete -c obd -n "__fish_obd_using_subcommand flatten" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand flatten" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand flatten" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand flatten" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand demo" -l keep -d 'Keep the sample files in this directory (created; must be empty) instead of a temporary one' -r -F
complete -c obd -n "__fish_obd_using_subcommand demo" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand demo" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand demo" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand demo" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand demo" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand attach" -l upper -d 'A writable layer (data file and index file) on top of the stack' -r -F
complete -c obd -n "__fish_obd_using_subcommand attach" -l queues -d 'Hardware queues (one server thread each)' -r
complete -c obd -n "__fish_obd_using_subcommand attach" -l depth -d 'Requests in flight per queue' -r
complete -c obd -n "__fish_obd_using_subcommand attach" -l config -d 'Take layers, upper layer and result file from an overlaybd image config' -r -F
complete -c obd -n "__fish_obd_using_subcommand attach" -l result-dir -d 'Where the config\'s resultFile may also be written (by default only next to the config)' -r -F
complete -c obd -n "__fish_obd_using_subcommand attach" -l timeout -d 'Give up when the device is not live after this many seconds' -r
complete -c obd -n "__fish_obd_using_subcommand attach" -l cache-size -d 'Memory for decompressed ZFile blocks, shared by all layers (e.g. 64M; 0 turns the cache off)' -r
complete -c obd -n "__fish_obd_using_subcommand attach" -l max-index-memory -d 'Memory all layer indexes together may take (e.g. 1G): a layer whose index claims more is refused before anything is allocated' -r
complete -c obd -n "__fish_obd_using_subcommand attach" -l record-trace -d 'Record the reads of the (read-only) stack into this trace file (overlaybd\'s format) until FILE.lock is removed or the server stops' -r -F
complete -c obd -n "__fish_obd_using_subcommand attach" -l prefetch -d 'Replay this trace in the background once the stack is open, so that the reads it recorded find their data fetched' -r -F
complete -c obd -n "__fish_obd_using_subcommand attach" -l creds -d 'Credentials for the registry (default: the auth files podman and docker write; $REGISTRY_AUTH_FILE first). Never printed' -r
complete -c obd -n "__fish_obd_using_subcommand attach" -l authfile -d 'Read credentials from this auth file (podman\'s auth.json or docker\'s config.json) instead of the default ones' -r -F
complete -c obd -n "__fish_obd_using_subcommand attach" -l insecure-registry -d 'Speak plain HTTP to this registry (HOST or HOST:PORT; repeatable). Loopback registries always are' -r
complete -c obd -n "__fish_obd_using_subcommand attach" -l cert-dir -d 'Also trust the CA certificates (*.crt, *.pem) in this directory' -r -F
complete -c obd -n "__fish_obd_using_subcommand attach" -l max-requests -d 'Requests in flight per registry, 1 to 64' -r
complete -c obd -n "__fish_obd_using_subcommand attach" -l request-timeout -d 'Give up on one request after this many seconds (it is retried a few times with back-off first)' -r
complete -c obd -n "__fish_obd_using_subcommand attach" -l cache-dir -d 'The local blob cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand attach" -l cache-limit -d 'Disk space the blob cache may take (e.g. 20G); least recently used blobs go first, never one in use' -r
complete -c obd -n "__fish_obd_using_subcommand attach" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand attach" -l read-only -d 'Serve the stack read-only even with --upper (the writable layer is not written)'
complete -c obd -n "__fish_obd_using_subcommand attach" -l foreground -d 'Stay attached: serve the device from this process until SIGINT/SIGTERM'
complete -c obd -n "__fish_obd_using_subcommand attach" -l ignore-chain -d 'Accept a stack whose parent-uuid chain is broken (by default an error: layers out of order or one missing)'
complete -c obd -n "__fish_obd_using_subcommand attach" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand attach" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand attach" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand attach" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand serve" -l socket -d 'Listen on this Unix socket (default: RUN_DIR/nbdN.sock, printed when live)' -r -F
complete -c obd -n "__fish_obd_using_subcommand serve" -l listen -d 'Listen on TCP instead, at ADDR:PORT (port 0: any free one); beyond loopback addresses only with --tls-cert' -r
complete -c obd -n "__fish_obd_using_subcommand serve" -l tls-cert -d 'Require TLS (NBD STARTTLS), with this PEM certificate chain (the server\'s certificate first)' -r -F
complete -c obd -n "__fish_obd_using_subcommand serve" -l tls-key -d 'The PEM private key of --tls-cert' -r -F
complete -c obd -n "__fish_obd_using_subcommand serve" -l name -d 'The export\'s name (clients may always ask for the default export "")' -r
complete -c obd -n "__fish_obd_using_subcommand serve" -l upper -d 'A writable layer (data file and index file) on top of the stack' -r -F
complete -c obd -n "__fish_obd_using_subcommand serve" -l threads -d 'Threads serving requests, 1 to 64' -r
complete -c obd -n "__fish_obd_using_subcommand serve" -l timeout -d 'Give up when the export is not live after this many seconds' -r
complete -c obd -n "__fish_obd_using_subcommand serve" -l cache-size -d 'Memory for decompressed ZFile blocks, shared by all layers (e.g. 64M; 0 turns the cache off)' -r
complete -c obd -n "__fish_obd_using_subcommand serve" -l max-index-memory -d 'Memory all layer indexes together may take (e.g. 1G): a layer whose index claims more is refused before anything is allocated' -r
complete -c obd -n "__fish_obd_using_subcommand serve" -l record-trace -d 'Record the reads of the (read-only) stack into this trace file (overlaybd\'s format) until FILE.lock is removed or the server stops' -r -F
complete -c obd -n "__fish_obd_using_subcommand serve" -l prefetch -d 'Replay this trace in the background once the stack is open, so that the reads it recorded find their data fetched' -r -F
complete -c obd -n "__fish_obd_using_subcommand serve" -l creds -d 'Credentials for the registry (default: the auth files podman and docker write; $REGISTRY_AUTH_FILE first). Never printed' -r
complete -c obd -n "__fish_obd_using_subcommand serve" -l authfile -d 'Read credentials from this auth file (podman\'s auth.json or docker\'s config.json) instead of the default ones' -r -F
complete -c obd -n "__fish_obd_using_subcommand serve" -l insecure-registry -d 'Speak plain HTTP to this registry (HOST or HOST:PORT; repeatable). Loopback registries always are' -r
complete -c obd -n "__fish_obd_using_subcommand serve" -l cert-dir -d 'Also trust the CA certificates (*.crt, *.pem) in this directory' -r -F
complete -c obd -n "__fish_obd_using_subcommand serve" -l max-requests -d 'Requests in flight per registry, 1 to 64' -r
complete -c obd -n "__fish_obd_using_subcommand serve" -l request-timeout -d 'Give up on one request after this many seconds (it is retried a few times with back-off first)' -r
complete -c obd -n "__fish_obd_using_subcommand serve" -l cache-dir -d 'The local blob cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand serve" -l cache-limit -d 'Disk space the blob cache may take (e.g. 20G); least recently used blobs go first, never one in use' -r
complete -c obd -n "__fish_obd_using_subcommand serve" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand serve" -l read-only -d 'Serve the stack read-only even with --upper'
complete -c obd -n "__fish_obd_using_subcommand serve" -l foreground -d 'Serve from this process until SIGINT/SIGTERM (default: return once the export is live and leave a background server)'
complete -c obd -n "__fish_obd_using_subcommand serve" -l ignore-chain -d 'Accept a stack whose parent-uuid chain is broken (by default an error: layers out of order or one missing)'
complete -c obd -n "__fish_obd_using_subcommand serve" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand serve" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand serve" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand detach" -l timeout -d 'How long to wait for the server to stop' -r
complete -c obd -n "__fish_obd_using_subcommand detach" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand detach" -s f -l force -d 'Also remove a device whose server is gone (killed), one obd did not attach, or one that is mounted; kill a server that does not stop'
complete -c obd -n "__fish_obd_using_subcommand detach" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand detach" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand detach" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand detach" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand list" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand list" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand list" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand list" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand doctor" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand doctor" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand doctor" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand doctor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand stats" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand stats" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand stats" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand stats" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand create" -l size -d 'Virtual disk size (e.g. 1G, 64M; a multiple of 512; 0 = inherit from the lower layers)' -r
complete -c obd -n "__fish_obd_using_subcommand create" -l uuid -d 'UUID of the layer (default: a random version-4 UUID)' -r
complete -c obd -n "__fish_obd_using_subcommand create" -s p -l parent-uuid -d 'Parent UUID (default: the null UUID)' -r
complete -c obd -n "__fish_obd_using_subcommand create" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand create" -s s -l sparse -d 'Sparse layer: data written in place, index file left empty'
complete -c obd -n "__fish_obd_using_subcommand create" -s f -l force -d 'Replace DATA and INDEX if they exist'
complete -c obd -n "__fish_obd_using_subcommand create" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand create" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand create" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand commit" -s m -l message -d 'Commit message, stored in the layer\'s user tag (at most 256 bytes)' -r
complete -c obd -n "__fish_obd_using_subcommand commit" -l uuid -d 'UUID of the new layer (default: the source\'s own uuid when it has one, else a fresh random one; 00000000-0000-0000-0000-000000000000 writes the null uuid, as the reference does)' -r
complete -c obd -n "__fish_obd_using_subcommand commit" -s p -l parent-uuid -d 'Parent UUID (default: the top --base layer\'s uuid; else the source\'s parent)' -r
complete -c obd -n "__fish_obd_using_subcommand commit" -l algorithm -d 'Block compression algorithm [default: lz4]' -r -f -a "lz4\t''
zstd\t''"
complete -c obd -n "__fish_obd_using_subcommand commit" -l level -d 'zstd level (1..=22; the reference always uses 3). Not stored in the file' -r
complete -c obd -n "__fish_obd_using_subcommand commit" -l block-size -d 'Uncompressed block size [default: 4K]' -r -f -a "4K\t''
8K\t''
16K\t''
32K\t''
64K\t''"
complete -c obd -n "__fish_obd_using_subcommand commit" -l threads -d 'Compression threads, 1 to 1024 (default: one per core). The output does not depend on it' -r
complete -c obd -n "__fish_obd_using_subcommand commit" -l diff-unit -d 'With --raw: the unit in which NEW.raw is compared with the base (a multiple of 512 up to 1M); a changed unit is committed whole' -r
complete -c obd -n "__fish_obd_using_subcommand commit" -l raw -d 'Commit the difference between this raw image and the base stack' -r -F
complete -c obd -n "__fish_obd_using_subcommand commit" -l base -d 'A layer of the stack below, bottom first (repeat for a stack). With --raw, the stack to diff against; with a writable layer, the stack it was used over: its size is inherited when the layer\'s is 0, and its top layer\'s uuid is the default parent. One image reference (docker://…, oci:DIR:TAG) names the whole base stack' -r -F
complete -c obd -n "__fish_obd_using_subcommand commit" -l max-index-memory -d 'Memory all layer indexes together may take (e.g. 1G): a layer whose index claims more is refused before anything is allocated' -r
complete -c obd -n "__fish_obd_using_subcommand commit" -l creds -d 'Credentials for the registry (default: the auth files podman and docker write; $REGISTRY_AUTH_FILE first). Never printed' -r
complete -c obd -n "__fish_obd_using_subcommand commit" -l authfile -d 'Read credentials from this auth file (podman\'s auth.json or docker\'s config.json) instead of the default ones' -r -F
complete -c obd -n "__fish_obd_using_subcommand commit" -l insecure-registry -d 'Speak plain HTTP to this registry (HOST or HOST:PORT; repeatable). Loopback registries always are' -r
complete -c obd -n "__fish_obd_using_subcommand commit" -l cert-dir -d 'Also trust the CA certificates (*.crt, *.pem) in this directory' -r -F
complete -c obd -n "__fish_obd_using_subcommand commit" -l max-requests -d 'Requests in flight per registry, 1 to 64' -r
complete -c obd -n "__fish_obd_using_subcommand commit" -l request-timeout -d 'Give up on one request after this many seconds (it is retried a few times with back-off first)' -r
complete -c obd -n "__fish_obd_using_subcommand commit" -l cache-dir -d 'The local blob cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand commit" -l cache-limit -d 'Disk space the blob cache may take (e.g. 20G); least recently used blobs go first, never one in use' -r
complete -c obd -n "__fish_obd_using_subcommand commit" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand commit" -s z -l zfile -d 'Compress the layer into a ZFile whose header holds the final index (as `overlaybd-commit -z`)'
complete -c obd -n "__fish_obd_using_subcommand commit" -s t -l tar -d 'Wrap the output in a one-member tar (works without --zfile too, unlike the reference)'
complete -c obd -n "__fish_obd_using_subcommand commit" -s f -l force -d 'Replace OUT if it exists'
complete -c obd -n "__fish_obd_using_subcommand commit" -l seal -d 'Seal DATA in place (append its index and a trailer); no OUT'
complete -c obd -n "__fish_obd_using_subcommand commit" -l ignore-chain -d 'Accept a stack whose parent-uuid chain is broken (by default an error: layers out of order or one missing)'
complete -c obd -n "__fish_obd_using_subcommand commit" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand commit" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand commit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand commit" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand merge" -s o -l output -d 'Output layer' -r -F
complete -c obd -n "__fish_obd_using_subcommand merge" -l algorithm -d 'Block compression algorithm [default: lz4]' -r -f -a "lz4\t''
zstd\t''"
complete -c obd -n "__fish_obd_using_subcommand merge" -l level -d 'zstd level (1..=22; the reference always uses 3). Not stored in the file' -r
complete -c obd -n "__fish_obd_using_subcommand merge" -l block-size -d 'Uncompressed block size [default: 4K]' -r -f -a "4K\t''
8K\t''
16K\t''
32K\t''
64K\t''"
complete -c obd -n "__fish_obd_using_subcommand merge" -l threads -d 'Compression threads, 1 to 1024 (default: one per core). The output does not depend on it' -r
complete -c obd -n "__fish_obd_using_subcommand merge" -l uuid -d 'UUID of the merged layer (default: a fresh random one; 00000000-0000-0000-0000-000000000000 writes the null uuid, as the reference does)' -r
complete -c obd -n "__fish_obd_using_subcommand merge" -s p -l parent-uuid -d 'Parent UUID (default: the bottom layer\'s parent)' -r
complete -c obd -n "__fish_obd_using_subcommand merge" -s m -l message -d 'Commit message (default: none, as `overlaybd-merge`)' -r
complete -c obd -n "__fish_obd_using_subcommand merge" -l max-index-memory -d 'Memory all layer indexes together may take (e.g. 1G): a layer whose index claims more is refused before anything is allocated' -r
complete -c obd -n "__fish_obd_using_subcommand merge" -l creds -d 'Credentials for the registry (default: the auth files podman and docker write; $REGISTRY_AUTH_FILE first). Never printed' -r
complete -c obd -n "__fish_obd_using_subcommand merge" -l authfile -d 'Read credentials from this auth file (podman\'s auth.json or docker\'s config.json) instead of the default ones' -r -F
complete -c obd -n "__fish_obd_using_subcommand merge" -l insecure-registry -d 'Speak plain HTTP to this registry (HOST or HOST:PORT; repeatable). Loopback registries always are' -r
complete -c obd -n "__fish_obd_using_subcommand merge" -l cert-dir -d 'Also trust the CA certificates (*.crt, *.pem) in this directory' -r -F
complete -c obd -n "__fish_obd_using_subcommand merge" -l max-requests -d 'Requests in flight per registry, 1 to 64' -r
complete -c obd -n "__fish_obd_using_subcommand merge" -l request-timeout -d 'Give up on one request after this many seconds (it is retried a few times with back-off first)' -r
complete -c obd -n "__fish_obd_using_subcommand merge" -l cache-dir -d 'The local blob cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand merge" -l cache-limit -d 'Disk space the blob cache may take (e.g. 20G); least recently used blobs go first, never one in use' -r
complete -c obd -n "__fish_obd_using_subcommand merge" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand merge" -s z -l zfile -d 'Compress the output into a ZFile (trailer only, as `overlaybd-merge`)'
complete -c obd -n "__fish_obd_using_subcommand merge" -s t -l tar -d 'Wrap the output in a one-member tar'
complete -c obd -n "__fish_obd_using_subcommand merge" -s f -l force -d 'Replace OUT if it exists'
complete -c obd -n "__fish_obd_using_subcommand merge" -l ignore-chain -d 'Accept a stack whose parent-uuid chain is broken (by default an error: layers out of order or one missing)'
complete -c obd -n "__fish_obd_using_subcommand merge" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand merge" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand merge" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand merge" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand zfile; and not __fish_seen_subcommand_from compress decompress help" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand zfile; and not __fish_seen_subcommand_from compress decompress help" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand zfile; and not __fish_seen_subcommand_from compress decompress help" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand zfile; and not __fish_seen_subcommand_from compress decompress help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand zfile; and not __fish_seen_subcommand_from compress decompress help" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand zfile; and not __fish_seen_subcommand_from compress decompress help" -f -a "compress" -d 'Compress a file (or stdin) into a ZFile, optionally tar-wrapped'
complete -c obd -n "__fish_obd_using_subcommand zfile; and not __fish_seen_subcommand_from compress decompress help" -f -a "decompress" -d 'Decompress a ZFile (tar wrapper detected) into a plain file or stdout'
complete -c obd -n "__fish_obd_using_subcommand zfile; and not __fish_seen_subcommand_from compress decompress help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from compress" -l algorithm -d 'Block compression algorithm [default: lz4]' -r -f -a "lz4\t''
zstd\t''"
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from compress" -l level -d 'zstd level (1..=22; the reference always uses 3). Not stored in the file' -r
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from compress" -l block-size -d 'Uncompressed block size [default: 4K]' -r -f -a "4K\t''
8K\t''
16K\t''
32K\t''
64K\t''"
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from compress" -l threads -d 'Compression threads, 1 to 1024 (default: one per core). The output does not depend on it' -r
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from compress" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from compress" -l tar -d 'Wrap the ZFile in a one-member tar, as `overlaybd-zfile -t` does'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from compress" -s f -l force -d 'Replace OUT if it exists'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from compress" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from compress" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from compress" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from compress" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from decompress" -l threads -d 'Decompression threads, 1 to 1024 (default: one per core)' -r
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from decompress" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from decompress" -s f -l force -d 'Replace OUT if it exists'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from decompress" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from decompress" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from decompress" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from decompress" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from help" -f -a "compress" -d 'Compress a file (or stdin) into a ZFile, optionally tar-wrapped'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from help" -f -a "decompress" -d 'Decompress a ZFile (tar wrapper detected) into a plain file or stdout'
complete -c obd -n "__fish_obd_using_subcommand zfile; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c obd -n "__fish_obd_using_subcommand verify" -l digest -d 'The SHA-256 the blob must have, as a registry digest (the whole file as stored); checked in the same pass as everything else. One file only' -r
complete -c obd -n "__fish_obd_using_subcommand verify" -l upper -d 'A writable layer (data file and index file) on top of the stack' -r -F
complete -c obd -n "__fish_obd_using_subcommand verify" -l threads -d 'Worker threads, 1 to 1024 (default: one per core)' -r
complete -c obd -n "__fish_obd_using_subcommand verify" -l creds -d 'Credentials for the registry (default: the auth files podman and docker write; $REGISTRY_AUTH_FILE first). Never printed' -r
complete -c obd -n "__fish_obd_using_subcommand verify" -l authfile -d 'Read credentials from this auth file (podman\'s auth.json or docker\'s config.json) instead of the default ones' -r -F
complete -c obd -n "__fish_obd_using_subcommand verify" -l insecure-registry -d 'Speak plain HTTP to this registry (HOST or HOST:PORT; repeatable). Loopback registries always are' -r
complete -c obd -n "__fish_obd_using_subcommand verify" -l cert-dir -d 'Also trust the CA certificates (*.crt, *.pem) in this directory' -r -F
complete -c obd -n "__fish_obd_using_subcommand verify" -l max-requests -d 'Requests in flight per registry, 1 to 64' -r
complete -c obd -n "__fish_obd_using_subcommand verify" -l request-timeout -d 'Give up on one request after this many seconds (it is retried a few times with back-off first)' -r
complete -c obd -n "__fish_obd_using_subcommand verify" -l cache-dir -d 'The local blob cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand verify" -l cache-limit -d 'Disk space the blob cache may take (e.g. 20G); least recently used blobs go first, never one in use' -r
complete -c obd -n "__fish_obd_using_subcommand verify" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand verify" -l stack -d 'Also check the files as one stack (bottom first): parent-uuid chain, virtual sizes, each layer valid'
complete -c obd -n "__fish_obd_using_subcommand verify" -l allow-empty -d 'Pass when the paths hold no layer blob at all (by default that fails: a CI gate over a directory that was never filled must not pass)'
complete -c obd -n "__fish_obd_using_subcommand verify" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand verify" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand verify" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand push" -l tag -d 'The tag to push under (default: the destination\'s tag, else latest)' -r
complete -c obd -n "__fish_obd_using_subcommand push" -l max-index-memory -d 'Memory all layer indexes together may take (e.g. 1G): a layer whose index claims more is refused before anything is allocated' -r
complete -c obd -n "__fish_obd_using_subcommand push" -l creds -d 'Credentials for the registry (default: the auth files podman and docker write; $REGISTRY_AUTH_FILE first). Never printed' -r
complete -c obd -n "__fish_obd_using_subcommand push" -l authfile -d 'Read credentials from this auth file (podman\'s auth.json or docker\'s config.json) instead of the default ones' -r -F
complete -c obd -n "__fish_obd_using_subcommand push" -l insecure-registry -d 'Speak plain HTTP to this registry (HOST or HOST:PORT; repeatable). Loopback registries always are' -r
complete -c obd -n "__fish_obd_using_subcommand push" -l cert-dir -d 'Also trust the CA certificates (*.crt, *.pem) in this directory' -r -F
complete -c obd -n "__fish_obd_using_subcommand push" -l max-requests -d 'Requests in flight per registry, 1 to 64' -r
complete -c obd -n "__fish_obd_using_subcommand push" -l request-timeout -d 'Give up on one request after this many seconds (it is retried a few times with back-off first)' -r
complete -c obd -n "__fish_obd_using_subcommand push" -l cache-dir -d 'The local blob cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand push" -l cache-limit -d 'Disk space the blob cache may take (e.g. 20G); least recently used blobs go first, never one in use' -r
complete -c obd -n "__fish_obd_using_subcommand push" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand push" -l ignore-chain -d 'Accept a stack whose parent-uuid chain is broken (by default an error: layers out of order or one missing)'
complete -c obd -n "__fish_obd_using_subcommand push" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand push" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand push" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand push" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand pull" -l creds -d 'Credentials for the registry (default: the auth files podman and docker write; $REGISTRY_AUTH_FILE first). Never printed' -r
complete -c obd -n "__fish_obd_using_subcommand pull" -l authfile -d 'Read credentials from this auth file (podman\'s auth.json or docker\'s config.json) instead of the default ones' -r -F
complete -c obd -n "__fish_obd_using_subcommand pull" -l insecure-registry -d 'Speak plain HTTP to this registry (HOST or HOST:PORT; repeatable). Loopback registries always are' -r
complete -c obd -n "__fish_obd_using_subcommand pull" -l cert-dir -d 'Also trust the CA certificates (*.crt, *.pem) in this directory' -r -F
complete -c obd -n "__fish_obd_using_subcommand pull" -l max-requests -d 'Requests in flight per registry, 1 to 64' -r
complete -c obd -n "__fish_obd_using_subcommand pull" -l request-timeout -d 'Give up on one request after this many seconds (it is retried a few times with back-off first)' -r
complete -c obd -n "__fish_obd_using_subcommand pull" -l cache-dir -d 'The local blob cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand pull" -l cache-limit -d 'Disk space the blob cache may take (e.g. 20G); least recently used blobs go first, never one in use' -r
complete -c obd -n "__fish_obd_using_subcommand pull" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand pull" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand pull" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand pull" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand pull" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand cache; and not __fish_seen_subcommand_from list verify prune help" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand cache; and not __fish_seen_subcommand_from list verify prune help" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand cache; and not __fish_seen_subcommand_from list verify prune help" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand cache; and not __fish_seen_subcommand_from list verify prune help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand cache; and not __fish_seen_subcommand_from list verify prune help" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand cache; and not __fish_seen_subcommand_from list verify prune help" -f -a "list" -d 'List the cached blobs: size, bytes present, verified, in use, idle time'
complete -c obd -n "__fish_obd_using_subcommand cache; and not __fish_seen_subcommand_from list verify prune help" -f -a "verify" -d 'Check every cached chunk\'s CRC and the digest of complete blobs; damaged chunks are dropped (fetched again when read). Exit 1 on damage'
complete -c obd -n "__fish_obd_using_subcommand cache; and not __fish_seen_subcommand_from list verify prune help" -f -a "prune" -d 'Remove blobs nobody uses, least recently used first, down to --keep'
complete -c obd -n "__fish_obd_using_subcommand cache; and not __fish_seen_subcommand_from list verify prune help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from list" -l cache-dir -d 'The cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from list" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from verify" -l cache-dir -d 'The cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from verify" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from verify" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from verify" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from verify" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from prune" -l cache-dir -d 'The cache (default: $XDG_CACHE_HOME/obd, ~/.cache/obd, /var/cache/obd for root)' -r -F
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from prune" -l keep -d 'Keep this much (e.g. 5G); default 0: every blob not in use goes' -r
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from prune" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from prune" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from prune" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from prune" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the cached blobs: size, bytes present, verified, in use, idle time'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check every cached chunk\'s CRC and the digest of complete blobs; damaged chunks are dropped (fetched again when read). Exit 1 on damage'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Remove blobs nobody uses, least recently used first, down to --keep'
complete -c obd -n "__fish_obd_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c obd -n "__fish_obd_using_subcommand completions" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand completions" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand completions" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand completions" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand man" -l dir -d 'Write every page (`obd.1`, `obd-verify.1`, ...) into this directory, e.g. /usr/local/share/man/man1; without it, print one page' -r -F
complete -c obd -n "__fish_obd_using_subcommand man" -l format -d 'Output form: tables for a terminal (fitted to its width), plain aligned columns for a pipe (for awk and cut), or JSON. Default: a table on a terminal, plain otherwise' -r -f -a "table\t'Boxed tables fitted to the terminal\'s width'
plain\t'Aligned columns without box characters, one record per line'
json\t'One JSON document'"
complete -c obd -n "__fish_obd_using_subcommand man" -l json -d 'Print one JSON document on stdout instead of tables (same as --format json)'
complete -c obd -n "__fish_obd_using_subcommand man" -s q -l quiet -d 'Do not show progress bars or notes'
complete -c obd -n "__fish_obd_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c obd -n "__fish_obd_using_subcommand man" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "inspect" -d 'Show headers, trailers, indexes and containers of layer blobs, or a stack\'s merged view'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "map" -d 'Show where each extent of a stack\'s virtual disk comes from (like `qemu-img map`)'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "flatten" -d 'Write a stack\'s merged virtual disk as a raw image (sparse where possible)'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "demo" -d 'Build a small sample stack in a temporary directory, then inspect, map and flatten it'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "attach" -d 'Serve a stack as a ublk block device (/dev/ublkbN); returns once it is live'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "serve" -d 'Serve a stack as an NBD export (for QEMU, qemu-img, nbd-client); returns once it is live'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "detach" -d 'Stop an attached device or an NBD export (--force: remove one whose server died)'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "list" -d 'List attached ublk devices with their layers, server and state'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "doctor" -d 'Check what attach needs: kernel, ublk_drv, /dev/ublk-control, features, io_uring (exit 1 on a failure)'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "stats" -d 'Requests, bytes, errors and latencies of attached devices and exports'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "create" -d 'Create an empty writable layer (data file + index file)'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "commit" -d 'Seal a writable layer into a read-only layer, seal in place, or commit a raw image\'s difference'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "merge" -d 'Flatten a stack of read-only layers into one read-only layer'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "zfile" -d 'Compress or decompress ZFile containers'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "verify" -d 'Check layer blobs (files or directories) for every corruption the formats can reveal'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "push" -d 'Push layer files as an overlaybd image to a registry or an OCI layout'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "pull" -d 'Pull an overlaybd image from a registry into an OCI layout directory'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "cache" -d 'The local cache of registry blobs: list, verify, prune'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "completions" -d 'Print the shell completion script of obd'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "man" -d 'Print a manual page, or write them all into a directory'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo attach serve detach list doctor stats create commit merge zfile verify push pull cache completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c obd -n "__fish_obd_using_subcommand help; and __fish_seen_subcommand_from zfile" -f -a "compress" -d 'Compress a file (or stdin) into a ZFile, optionally tar-wrapped'
complete -c obd -n "__fish_obd_using_subcommand help; and __fish_seen_subcommand_from zfile" -f -a "decompress" -d 'Decompress a ZFile (tar wrapper detected) into a plain file or stdout'
complete -c obd -n "__fish_obd_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "list" -d 'List the cached blobs: size, bytes present, verified, in use, idle time'
complete -c obd -n "__fish_obd_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "verify" -d 'Check every cached chunk\'s CRC and the digest of complete blobs; damaged chunks are dropped (fetched again when read). Exit 1 on damage'
complete -c obd -n "__fish_obd_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "prune" -d 'Remove blobs nobody uses, least recently used first, down to --keep'
