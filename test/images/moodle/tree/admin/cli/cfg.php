<?php
// Config CLI of the stand-in, with the read side of Moodle's admin/cli/cfg.php: `--name=X` prints the
// setting (config.php's $CFG first, as Moodle's get_config does for core) and exits 0, or exits 3 when it is
// not set. Like every Moodle CLI script it loads config.php, which connects to the database first.
define('CLI_SCRIPT', true);
require(__DIR__ . '/../../config.php');

$opts = getopt('h', ['name:', 'component:', 'no-eol', 'shell-arg', 'json', 'help']);
if (!isset($opts['name'])) {
    foreach (get_object_vars($CFG) as $k => $v) {
        if (is_scalar($v)) {
            echo "$k\t$v\n";
        }
    }
    exit(0);
}
$name = $opts['name'];
if (!property_exists($CFG, $name) || !is_scalar($CFG->$name)) {
    fwrite(STDERR, "No such configuration variable found.\n");
    exit(3);
}
$value = (string)$CFG->$name;
if (isset($opts['shell-arg'])) {
    $value = escapeshellarg($value);
}
echo $value, isset($opts['no-eol']) ? '' : "\n";
exit(0);
