# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_obd_global_optspecs
    string join \n json q/quiet h/help V/version
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

complete -c obd -n "__fish_obd_needs_command" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c obd -n "__fish_obd_needs_command" -s q -l quiet -d 'Do not show progress bars'
complete -c obd -n "__fish_obd_needs_command" -s h -l help -d 'Print help'
complete -c obd -n "__fish_obd_needs_command" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_needs_command" -f -a "inspect" -d 'Show headers, trailers, indexes and containers of layer blobs, or a stack\'s merged view'
complete -c obd -n "__fish_obd_needs_command" -f -a "map" -d 'Show where each extent of a stack\'s virtual disk comes from (like `qemu-img map`)'
complete -c obd -n "__fish_obd_needs_command" -f -a "flatten" -d 'Write a stack\'s merged virtual disk as a raw image (sparse where possible)'
complete -c obd -n "__fish_obd_needs_command" -f -a "demo" -d 'Build a small sample stack in a temporary directory, then inspect, map and flatten it'
complete -c obd -n "__fish_obd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c obd -n "__fish_obd_using_subcommand inspect" -l upper -d 'A writable layer (data file and index file) on top of the stack' -r -F
complete -c obd -n "__fish_obd_using_subcommand inspect" -l index -d 'List every index segment (sectors: offset, length, moffset)'
complete -c obd -n "__fish_obd_using_subcommand inspect" -l stack -d 'Treat the files as one stack (bottom first) and show the merged view'
complete -c obd -n "__fish_obd_using_subcommand inspect" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c obd -n "__fish_obd_using_subcommand inspect" -s q -l quiet -d 'Do not show progress bars'
complete -c obd -n "__fish_obd_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c obd -n "__fish_obd_using_subcommand inspect" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand map" -l lba -d 'Show only the extent that holds this sector (512-byte LBA)' -r
complete -c obd -n "__fish_obd_using_subcommand map" -l upper -d 'A writable layer (data file and index file) on top of the stack' -r -F
complete -c obd -n "__fish_obd_using_subcommand map" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c obd -n "__fish_obd_using_subcommand map" -s q -l quiet -d 'Do not show progress bars'
complete -c obd -n "__fish_obd_using_subcommand map" -s h -l help -d 'Print help'
complete -c obd -n "__fish_obd_using_subcommand map" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand flatten" -s o -l output -d 'Output raw image, or `-` for stdout' -r -F
complete -c obd -n "__fish_obd_using_subcommand flatten" -l upper -d 'A writable layer (data file and index file) on top of the stack' -r -F
complete -c obd -n "__fish_obd_using_subcommand flatten" -l cache-size -d 'Memory for decompressed ZFile blocks, shared by all layers (e.g. 64M; 0 turns the cache off)' -r
complete -c obd -n "__fish_obd_using_subcommand flatten" -s f -l force -d 'Replace OUT if it exists'
complete -c obd -n "__fish_obd_using_subcommand flatten" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c obd -n "__fish_obd_using_subcommand flatten" -s q -l quiet -d 'Do not show progress bars'
complete -c obd -n "__fish_obd_using_subcommand flatten" -s h -l help -d 'Print help'
complete -c obd -n "__fish_obd_using_subcommand flatten" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand demo" -l keep -d 'Keep the sample files in this directory instead of a temporary one' -r -F
complete -c obd -n "__fish_obd_using_subcommand demo" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c obd -n "__fish_obd_using_subcommand demo" -s q -l quiet -d 'Do not show progress bars'
complete -c obd -n "__fish_obd_using_subcommand demo" -s h -l help -d 'Print help'
complete -c obd -n "__fish_obd_using_subcommand demo" -s V -l version -d 'Print version'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo help" -f -a "inspect" -d 'Show headers, trailers, indexes and containers of layer blobs, or a stack\'s merged view'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo help" -f -a "map" -d 'Show where each extent of a stack\'s virtual disk comes from (like `qemu-img map`)'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo help" -f -a "flatten" -d 'Write a stack\'s merged virtual disk as a raw image (sparse where possible)'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo help" -f -a "demo" -d 'Build a small sample stack in a temporary directory, then inspect, map and flatten it'
complete -c obd -n "__fish_obd_using_subcommand help; and not __fish_seen_subcommand_from inspect map flatten demo help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
