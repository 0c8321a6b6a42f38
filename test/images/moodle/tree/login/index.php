<?php
require(__DIR__ . '/../config.php');
echo "Login page\n";
