<?php
// Upgrade check of the stand-in, with Moodle's exit codes: `--is-pending` exits 2 when the code in this
// tree is newer than the version recorded in the database (mdl_config.version), 0 when they agree,
// 1 on error. `--non-interactive` performs the "upgrade" by recording the code version.
define('CLI_SCRIPT', true);
require(__DIR__ . '/../../config.php');

$opts = getopt('h', ['is-pending', 'non-interactive', 'allow-unstable', 'help']);
[$codeversion, $release] = moodle_code_version();

try {
    $db = moodle_db();
    $res = $db->query("SELECT value FROM {$CFG->prefix}config WHERE name = 'version'");
    $row = $res->fetch(PDO::FETCH_NUM);
} catch (Throwable $e) {
    fwrite(STDERR, "Database error: " . $e->getMessage() . "\n");
    exit(1);
}
if (!$row) {
    fwrite(STDERR, "Moodle is not installed (no version in {$CFG->prefix}config)\n");
    exit(1);
}
$dbversion = (float)$row[0];
$pending = (float)$codeversion > $dbversion;

if (isset($opts['is-pending'])) {
    if ($pending) {
        echo "An upgrade is pending: code $codeversion, database $dbversion\n";
        exit(2);
    }
    exit(0);
}
if ((float)$codeversion < $dbversion) {
    fwrite(STDERR, "Error: the code ($codeversion) is older than the database ($dbversion): downgrades are not possible\n");
    exit(1);
}
if (!$pending) {
    echo "No upgrade needed for the installed version $release\n";
    exit(0);
}
$stmt = $db->prepare("UPDATE {$CFG->prefix}config SET value = ? WHERE name = 'version'");
$v = (string)$codeversion;
$stmt->execute([$v]);
echo "Command line upgrade to $release completed successfully\n";
exit(0);
